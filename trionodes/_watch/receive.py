"""Reading one Watch stream: its next event, split, and the decoding of its nodes.

What a silent or ended stream means in each phase is decided in
:mod:`trionodes._core.stream`; this module awaits, applies the time limit it gives,
and raises what it says. Decoding a large backlog is spread over checkpoints so that
it does not freeze the event loop.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel

from .._core.engine import decode_nodes
from .._core.stream import end_of_stream_error, silence_error, silence_timeout
from .._core.wire import RawEvent, split_watch_event
from .._curator import RawStream
from .._proto.metropolis.node.core.curator.proto.api import Node

# Nodes decoded between two checkpoints (about 20 ms of decoding).
_DECODE_CHUNK = 200


async def receive_event(
    stream: RawStream, *, in_backlog: bool, backlog_timeout: float | None = None
) -> RawEvent:
    """The next event of ``stream``, split.

    Args:
        stream: The call's messages.
        in_backlog: Whether the stream's backlog is still coming; once it is in, a
            quiet stream is normal and a clean end is no breach of contract.
        backlog_timeout: In a backlog, give up after this many seconds of silence.

    Raises:
        ProtocolError: The Curator ended the call before its backlog ended.
        ConnectionLost: The Curator ended the call after its backlog, or sent
            nothing for ``backlog_timeout`` seconds in the middle of its backlog.
    """
    timeout = silence_timeout(in_backlog, backlog_timeout)
    try:
        if timeout is None:  # the common case: no cancel scope per live event
            return split_watch_event(await stream.receive())
        with anyio.move_on_after(timeout):
            return split_watch_event(await stream.receive())
    except anyio.EndOfStream:
        raise end_of_stream_error(in_backlog) from None
    raise silence_error(timeout)


async def decode_in_chunks(pending: list[bytes]) -> dict[bytes, Node]:
    """Decode serialized nodes, keyed by their bytes, with a checkpoint every chunk.

    Raises:
        ProtocolError: One of them is not a valid ``Node``.
    """
    if len(pending) <= _DECODE_CHUNK:
        return decode_nodes(pending)
    decoded: dict[bytes, Node] = {}
    for start in range(0, len(pending), _DECODE_CHUNK):
        decoded.update(decode_nodes(pending[start : start + _DECODE_CHUNK]))
        await anyio.lowlevel.checkpoint()
    return decoded
