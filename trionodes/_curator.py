"""The connection object every watch takes, over any source of Watch streams.

:class:`Curator` is what :func:`open_curator` yields. Behind it is a
:class:`StreamSource`: the gRPC client of :mod:`trionodes._transport`, or the
in-memory cluster of :mod:`trionodes.testing`. The watches see only this seam.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol, final

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
    """Opens Watch calls."""

    def open_stream(self, request: WatchRequest) -> AbstractAsyncContextManager[RawStream]:
        """Start a Watch call; leaving the block cancels it."""
        ...


@final
class Curator:
    """A connection to a cluster's Curator; made by :func:`open_curator`.

    Pass it to :func:`watch_nodes`, :func:`open_node_watch`,
    :func:`open_node_changes` or :func:`watch_node`.

    Attributes:
        host: The Curator's host name or address.
        port: The Curator's port.
    """

    __slots__ = ("_source", "host", "port")
    __module__ = "trionodes"

    _source: StreamSource
    host: str
    port: int

    def __init__(self) -> None:
        raise TypeError("Curator objects are made by trionodes.open_curator")

    @classmethod
    def _over(cls, source: StreamSource, host: str, port: int) -> Curator:
        self = object.__new__(cls)
        self._source = source
        self.host = host
        self.port = port
        return self

    def __repr__(self) -> str:
        return f"<trionodes.Curator {self.host}:{self.port}>"

    def _open_stream(self, request: WatchRequest) -> AbstractAsyncContextManager[RawStream]:
        return self._source.open_stream(request)
