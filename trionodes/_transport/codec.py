"""The methods both ends call, and their codec: Watch events cross it as undecoded bytes."""

from __future__ import annotations

from typing import Any

from grpclib.encoding.proto import ProtoCodec

WATCH_PATH = "/metropolis.node.core.curator.proto.api.Curator/Watch"
GET_CURRENT_LEADER_PATH = "/metropolis.node.core.curator.proto.api.CuratorLocal/GetCurrentLeader"


class RawMessage:
    """Marker message type: the codec hands its bytes over undecoded."""


class RawCodec(ProtoCodec):
    """Protobuf codec that passes serialized messages through as ``bytes``.

    Decoding is left to the caller (which skips nodes it has seen), and a server may
    send pre-encoded or deliberately broken messages.
    """

    def encode(self, message: Any, message_type: Any) -> bytes:
        if isinstance(message, bytes):
            return message
        return super().encode(message, message_type)

    def decode(self, data: bytes, message_type: Any) -> Any:
        if message_type is RawMessage:
            return data
        return super().decode(data, message_type)
