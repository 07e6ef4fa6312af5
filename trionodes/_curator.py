"""The connection object every watch takes, over any source of Watch streams.

:class:`Curator` is what :func:`open_curator` yields. Behind it is a
:class:`StreamSource`: the gRPC client of :mod:`trionodes._transport`, or the
in-memory cluster of :mod:`trionodes.testing`. The watches see only this seam.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol, final

from ._core.endpoints import Endpoint
from ._proto.metropolis.node.core.curator.proto.api import WatchRequest


class RawStream(Protocol):
    """The raw messages of one Watch call, on the caller's side."""

    async def receive(self) -> bytes:
        """The next serialized ``WatchEvent``.

        Raises:
            anyio.EndOfStream: The call ended with status OK.
            TrionodesError: The call failed.
        """
        ...


class StreamSource(Protocol):
    """Opens Watch calls.

    Attributes:
        host: The server the calls go to now, for messages (for a cluster, the
            current leader).
        port: Its port.
        leader_id: The node id of the leader the calls go to, when known.
    """

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def leader_id(self) -> str | None: ...

    def open_stream(self, request: WatchRequest) -> AbstractAsyncContextManager[RawStream]:
        """Start a Watch call; leaving the block cancels it."""
        ...


@final
class Curator:
    """A connection to a cluster's Curator; made by :func:`open_curator`.

    Made by :func:`open_curator` (one server) and :func:`open_cluster` (whichever
    node leads a cluster now). Pass it to :func:`watch_nodes`,
    :func:`open_node_watch`, :func:`open_node_changes` or :func:`watch_node`.
    """

    __slots__ = ("_source",)
    __module__ = "trionodes"

    _source: StreamSource

    def __init__(self) -> None:
        raise TypeError("Curator objects are made by trionodes.open_curator or open_cluster")

    @classmethod
    def _over(cls, source: StreamSource) -> Curator:
        self = object.__new__(cls)
        self._source = source
        return self

    @property
    def host(self) -> str:
        """The host name or address the watches talk to now (for a cluster: the leader)."""
        return self._source.host

    @property
    def port(self) -> int:
        """The port the watches talk to now."""
        return self._source.port

    @property
    def leader_id(self) -> str | None:
        """The node id of the cluster's leader, when known (from :func:`open_cluster`)."""
        return self._source.leader_id

    @property
    def _where(self) -> str:
        """``host:port`` as log lines write it (an IPv6 address in brackets)."""
        return str(Endpoint(self.host, self.port))

    def __repr__(self) -> str:
        return f"<trionodes.Curator {self._where}>"

    def _open_stream(self, request: WatchRequest) -> AbstractAsyncContextManager[RawStream]:
        return self._source.open_stream(request)
