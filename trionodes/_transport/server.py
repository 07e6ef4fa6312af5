"""A real gRPC server for Watch, with network fault controls: the fakes' transport.

:func:`serve_watch` serves ``Curator.Watch`` from a sans-I/O :class:`WatchHandler`.
The handler and its sessions are only ever called on the host library's thread
(under Trio, the server's asyncio loop runs on a worker thread and asks the host
side through the bridge), so the cluster model behind them needs no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl as _ssl
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol, cast

import anyio
import grpclib.const
import grpclib.exceptions
import grpclib.server
from grpclib.protocol import H2Protocol

from .._errors import CuratorError
from .._proto.metropolis.node.core.curator.proto.api import WatchRequest
from .bridge import Bridge, open_bridge
from .codec import WATCH_PATH, RawCodec, RawMessage
from .grpclib_private import HookedServer, protocol_args


class WatchSession(Protocol):
    """One Watch call being served; a sans-I/O source of messages."""

    def take(self) -> list[bytes | CuratorError]:
        """Messages ready to send now, in order.

        A :class:`CuratorError` ends the call with its status. An empty list means
        nothing is ready: the server waits for the waker.
        """
        ...

    def set_waker(self, waker: Callable[[], None]) -> None:
        """Register the function to call when :meth:`take` has something new."""
        ...

    def close(self, cancelled: bool) -> None:
        """The call ended; ``cancelled`` is true when the client cancelled it."""
        ...


class WatchHandler(Protocol):
    """Serves Watch calls."""

    def open_session(
        self, request: WatchRequest, *, peer_cert: Mapping[str, Any] | None = None
    ) -> WatchSession:
        """Start serving one call.

        Args:
            request: The call's request.
            peer_cert: The client's verified TLS certificate, as
                :meth:`ssl.SSLSocket.getpeercert` gives it; None over plain text, or
                when the client presented none.

        Raises:
            CuratorError: The call is refused with this status.
        """
        ...


def _grpc_error(error: CuratorError) -> grpclib.exceptions.GRPCError:
    return grpclib.exceptions.GRPCError(grpclib.const.Status(error.status.value), error.details)


class _WatchService:
    """grpclib handler mapping for the Curator service, over a :class:`WatchHandler`."""

    def __init__(self, handler: WatchHandler, bridge: Bridge) -> None:
        self._handler = handler
        self._bridge = bridge

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            WATCH_PATH: grpclib.const.Handler(
                self._watch, grpclib.const.Cardinality.UNARY_STREAM, WatchRequest, RawMessage
            )
        }

    async def _watch(self, call: grpclib.server.Stream[WatchRequest, bytes]) -> None:
        bridge = self._bridge
        request = await call.recv_message()
        if request is None:
            raise grpclib.exceptions.GRPCError(
                grpclib.const.Status.INVALID_ARGUMENT, "no WatchRequest was sent"
            )
        try:
            session = await bridge.call_host(self._open_session, request, call.peer.cert() or None)
        except CuratorError as exc:
            raise _grpc_error(exc) from None
        wake = asyncio.Event()
        cancelled = False
        try:
            await bridge.call_host(session.set_waker, lambda: bridge.to_loop(wake.set))
            while True:
                wake.clear()
                items = await bridge.call_host(session.take)
                for item in items:
                    if isinstance(item, CuratorError):
                        raise _grpc_error(item)
                    await call.send_message(item)
                if not items:
                    await wake.wait()
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            bridge.to_host(session.close, cancelled)

    def _open_session(self, request: WatchRequest, peer_cert: Any) -> WatchSession:
        return self._handler.open_session(request, peer_cert=peer_cert)


class _GatedTransport:
    """A server connection's transport that can go silent, like a partitioned network.

    Frozen, it reads nothing (what the client sends waits in the kernel, pings too)
    and holds back every write; thawed, it sends what it held and reads again.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: list[bytes] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._transport.write(data)
        else:
            self._held.append(data)

    def freeze(self) -> None:
        if self._held is None:
            self._held = []
            self._transport.pause_reading()

    def thaw(self) -> None:
        held, self._held = self._held, None
        if held is None or self._transport.is_closing():
            return
        self._transport.write(b"".join(held))
        self._transport.resume_reading()


class _ServerConnection(H2Protocol):
    """A connection the server accepted, which its :class:`WatchServer` can freeze or drop."""

    transport: _GatedTransport

    def __init__(self, owner: WatchServer, server: grpclib.server.Server, base: H2Protocol) -> None:
        super().__init__(*protocol_args(base))
        self.owner = owner
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = _GatedTransport(cast(asyncio.Transport, transport))
        accepted = self.owner._connection_made(self)
        super().connection_made(cast(asyncio.Transport, self.transport))
        if not accepted:
            self.transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.owner._connection_lost(self)
        super().connection_lost(exc)


class WatchServer:
    """A running gRPC server with network fault controls; see :func:`serve_watch`.

    The controls act on connections, below gRPC: freeze them (a silent network
    partition), drop them (the server's process killed), stop listening (nothing
    there), start again on the same port. Call them from the host library (Trio or
    asyncio); they take effect on the server's loop, in the order given.

    Attributes:
        host: The address it listens on.
        port: The port it listens on (the same across restarts).
    """

    def __init__(
        self,
        handler: WatchHandler,
        host: str,
        port: int,
        ssl: _ssl.SSLContext | None,
        bridge: Bridge,
    ) -> None:
        self.host = host
        self.port = port
        self._handler = handler
        self._ssl = ssl
        self._bridge = bridge
        self._server: grpclib.server.Server | None = None
        # Shared with the loop side, under the lock.
        self._lock = threading.Lock()
        self._connections: set[_ServerConnection] = set()
        self._accepted = 0
        self._freeze_new = False
        # Host side only.
        self._frozen = False

    @property
    def listening(self) -> bool:
        """Whether it accepts connections (false after :meth:`refuse_connections`)."""
        return self._server is not None

    @property
    def connections_accepted(self) -> int:
        """How many connections it has accepted, across restarts."""
        return self._accepted

    @property
    def open_connections(self) -> int:
        """How many accepted connections are open now."""
        return len(self._connections)

    @property
    def frozen(self) -> bool:
        """Whether :meth:`freeze` is in force."""
        return self._frozen

    def freeze(self, *, new_connections: bool = True) -> None:
        """Go silent on every open connection, without closing any, until :meth:`thaw`.

        Nothing more is read (so HTTP/2 pings go unanswered) and nothing more is
        sent; the connections stay established, as in a network partition that
        drops packets. Calls go on being served into held-back buffers, within the
        client's flow-control window.

        Args:
            new_connections: Freeze connections accepted while frozen as well (the
                TCP handshake completes, then silence: a partition that also swallows
                new connections). False lets a client that reconnects get through.
        """
        self._frozen = True
        with self._lock:
            self._freeze_new = new_connections
            connections = list(self._connections)
        for connection in connections:
            self._bridge.to_loop(connection.transport.freeze)

    def thaw(self) -> None:
        """End :meth:`freeze`: send what was held back and read again."""
        self._frozen = False
        with self._lock:
            self._freeze_new = False
            connections = list(self._connections)
        for connection in connections:
            self._bridge.to_loop(connection.transport.thaw)

    def drop_connections(self) -> None:
        """Abort every open connection at once: no trailers, no GOAWAY, unsent data lost.

        What a client sees when the server's process is killed. Calls on them are
        cancelled on the server's side; it keeps listening.
        """
        self._bridge.to_loop(_abort, self._take_connections())

    async def refuse_connections(self) -> None:
        """Stop listening and drop every open connection (:meth:`drop_connections`).

        New connection attempts are refused until :meth:`accept_connections`. Returns
        once the calls that were open are torn down.
        """
        server, self._server = self._server, None
        self.drop_connections()
        if server is not None:
            await self._bridge.run(_stop_server, server)

    async def accept_connections(self) -> None:
        """Listen again on the same port, after :meth:`refuse_connections`.

        Raises:
            OSError: The port was taken meanwhile.
        """
        if self._server is None:
            await self._listen(_listening_socket(self.host, self.port))

    async def restart(self) -> None:
        """Drop every connection and listen again on the same port, like a restarted process."""
        await self.refuse_connections()
        await self.accept_connections()

    def _take_connections(self) -> list[_ServerConnection]:
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        return connections

    async def _listen(self, sock: socket.socket) -> None:
        try:
            await self._bridge.run(self._start_server, sock)
        except BaseException:
            self._server = None
            sock.close()
            raise

    async def _start_server(self, sock: socket.socket) -> None:
        # Built on the loop: grpclib's Server looks the loop up when constructed.
        server = HookedServer(
            [_WatchService(self._handler, self._bridge)],
            codec=RawCodec(),
            wrap=lambda base: _ServerConnection(self, server, base),
        )
        # Set before listening: the first connection may come before start returns.
        self._server = server
        await server.start(sock=sock, ssl=self._ssl)

    async def _close(self) -> None:
        server, self._server = self._server, None
        # asyncio's Server.close() leaves accepted connections open (and since 3.12.1
        # wait_closed() waits for them): close them as an exiting process would.
        self._bridge.to_loop(_close, self._take_connections())
        if server is not None:
            await self._bridge.run(_stop_server, server)

    # Loop side.

    def _connection_made(self, connection: _ServerConnection) -> bool:
        """Take on a new connection; false if it must be dropped at once."""
        if connection.server is not self._server:
            # Accepted before the server stopped listening, its TLS handshake done
            # only after: it goes the way of the others.
            return False
        with self._lock:
            self._accepted += 1
            self._connections.add(connection)
            freeze = self._freeze_new
        if freeze:
            connection.transport.freeze()
        return True

    def _connection_lost(self, connection: _ServerConnection) -> None:
        with self._lock:
            self._connections.discard(connection)


def _abort(connections: list[_ServerConnection]) -> None:
    for connection in connections:
        connection.transport.abort()


def _close(connections: list[_ServerConnection]) -> None:
    for connection in connections:
        connection.transport.close()


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    # Rebinding the port of a restarted server must not wait for TIME_WAIT to pass.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def _stop_server(server: grpclib.server.Server) -> None:
    server.close()
    await server.wait_closed()


@contextlib.asynccontextmanager
async def serve_watch(
    handler: WatchHandler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl: _ssl.SSLContext | None = None,
) -> AsyncIterator[WatchServer]:
    """Serve the Curator's Watch method with ``handler`` until the block ends.

    On exit the server stops listening and closes every connection, after the data
    already queued on it (what a frozen connection held back is dropped with it).

    Args:
        handler: Decides what each call receives; called on the host's thread only.
        host: Address to listen on.
        port: Port to listen on; 0 picks a free one.
        ssl: A server TLS context; None for plain text.

    Yields:
        The server, listening; its fault controls act on its connections.
    """
    async with open_bridge() as bridge:
        sock = _listening_socket(host, port)
        server = WatchServer(handler, host, sock.getsockname()[1], ssl, bridge)
        await server._listen(sock)
        try:
            yield server
        finally:
            with anyio.CancelScope(shield=True):
                await server._close()
