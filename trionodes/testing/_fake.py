"""The network fake: the cluster model served by a real gRPC server on loopback."""

from __future__ import annotations

import contextlib
import ssl as _ssl
from collections.abc import AsyncIterator

from .._transport import WatchServer, serve_watch
from ._model import DEFAULT_MESSAGE_BYTES
from ._served import ServedCluster


class FakeCurator(ServedCluster):
    """A cluster held in memory and served over gRPC; make one with :func:`open_fake_curator`.

    Change the cluster with :meth:`put`, :meth:`delete` and :meth:`change`, fail
    or stall its Watch calls with :meth:`fail_streams`, :meth:`send_raw`,
    :meth:`stall` and :meth:`resume`.

    Fault controls in the network, once serving, act on the :class:`WatchServer`
    below (documented there): :meth:`freeze` and :meth:`thaw` (a silent
    partition), :meth:`drop_connections` (as if the process were killed),
    :meth:`refuse_connections` and :meth:`accept_connections` (nothing listening
    on the port, then the same port again), :meth:`restart` (both at once). Calls
    on the connections these drop count in ``streams_dropped``.
    """

    host = ""
    """The address the server listens on."""
    port = 0
    """The port it listens on (the same across restarts)."""
    _server: WatchServer | None = None

    @property
    def connections_accepted(self) -> int:
        """How many connections the server has accepted (across restarts)."""
        return self._serving.connections_accepted

    @property
    def open_connections(self) -> int:
        """How many connections are open now."""
        return self._serving.open_connections

    @property
    def listening(self) -> bool:
        """Whether the server accepts connections (false after :meth:`refuse_connections`)."""
        return self._serving.listening

    @property
    def frozen(self) -> bool:
        """Whether :meth:`freeze` is in force."""
        return self._serving.frozen

    def freeze(self, *, new_connections: bool = True) -> None:
        """Go silent on every connection until :meth:`thaw`; see :meth:`WatchServer.freeze`.

        Calls go on being served into held-back buffers and changes are queued; a
        frozen fake that exits drops its connections.
        """
        self._serving.freeze(new_connections=new_connections)

    def thaw(self) -> None:
        """End :meth:`freeze`; see :meth:`WatchServer.thaw`."""
        self._serving.thaw()

    def drop_connections(self) -> None:
        """Abort every connection at once; see :meth:`WatchServer.drop_connections`."""
        self._mark_open_streams_dropped()
        self._serving.drop_connections()

    async def refuse_connections(self) -> None:
        """Drop every connection and refuse new ones until :meth:`accept_connections`.

        See :meth:`WatchServer.refuse_connections`.
        """
        self._mark_open_streams_dropped()
        await self._serving.refuse_connections()

    async def accept_connections(self) -> None:
        """Listen again, on the same port; see :meth:`WatchServer.accept_connections`."""
        await self._serving.accept_connections()

    async def restart(self) -> None:
        """Drop every connection and listen again; see :meth:`WatchServer.restart`.

        The cluster stays as it was, as with a Curator's process restarted.
        """
        self._mark_open_streams_dropped()
        await self._serving.restart()

    @property
    def _serving(self) -> WatchServer:
        if self._server is None:
            raise RuntimeError("the fake Curator is not serving (see open_fake_curator)")
        return self._server


@contextlib.asynccontextmanager
async def open_fake_curator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl: _ssl.SSLContext | None = None,
    backlog_nodes_per_event: int | None = None,
    max_message_bytes: int = DEFAULT_MESSAGE_BYTES,
    shuffle_seed: int | None = 0,
    spurious_nodes: bool = False,
) -> AsyncIterator[FakeCurator]:
    """Run a fake Curator on the network until the block ends.

    Works from Trio and from asyncio::

        async with open_fake_curator() as fake:
            fake.put(make_node(1), make_node(2))
            async with trionodes.open_curator(fake.host, fake.port) as curator:
                ...

    Args:
        host: Address to listen on (keep it on loopback).
        port: Port to listen on; 0 picks a free one.
        ssl: A server TLS context; None serves plain text. For mutual TLS like a
            Curator's, ``server_ssl_context(cert, key, client_ca=ca)``.
        backlog_nodes_per_event: At most this many nodes per backlog event (to get a
            backlog split over many events with a small cluster).
        max_message_bytes: Keep backlog events near or under this size.
        shuffle_seed: Seeds the shuffling of the backlog; None for a random seed.
        spurious_nodes: NodeInCluster events also carry other nodes.

    Yields:
        The fake Curator, already serving. On exit, open calls end with
        ``UNAVAILABLE`` (a stall ends first) before the server stops and closes its
        connections; a frozen fake drops them instead.
    """
    fake = FakeCurator(
        backlog_nodes_per_event=backlog_nodes_per_event,
        max_message_bytes=max_message_bytes,
        shuffle_seed=shuffle_seed,
        spurious_nodes=spurious_nodes,
    )
    async with serve_watch(fake, host, port, ssl=ssl) as server:
        fake.host, fake.port, fake._server = server.host, server.port, server
        try:
            yield fake
        finally:
            if server.frozen:
                # Nothing gets through a partition: the connections just go.
                fake.drop_connections()
            fake._server = None
            await fake._shut_down()
