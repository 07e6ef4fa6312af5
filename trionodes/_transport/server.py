"""A real gRPC server for the fakes, with network fault controls: their transport.

:func:`serve_grpc` serves server-streaming methods, each from a sans-I/O
:class:`StreamHandler`; :func:`serve_watch` serves ``Curator.Watch`` alone from a
:class:`WatchHandler`. Handlers and their sessions are only ever called on the host
library's thread (under Trio, the server's asyncio loop runs on a worker thread and
asks the host side through the bridge), so the cluster model behind them needs no
locks.

A server may enforce a keepalive :class:`PingPolicy` the way gRPC servers do, and
can say GOAWAY on all its connections (:meth:`WatchServer.goaway`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl as _ssl
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

import anyio
import grpclib.const
import grpclib.exceptions
import grpclib.server
from grpclib.protocol import H2Protocol
from h2.errors import ErrorCodes

from .._errors import CuratorError
from .._proto.metropolis.node.core.curator.proto.api import WatchRequest
from .bridge import Bridge, abort_transports, open_bridge
from .codec import WATCH_PATH, RawCodec, RawMessage
from .grpclib_private import (
    HookedServer,
    carries_data_or_headers,
    on_ping_received,
    protocol_args,
    send_goaway,
)

_Request = TypeVar("_Request")
_RequestIn = TypeVar("_RequestIn", contravariant=True)


class WatchSession(Protocol):
    """One server-streaming call being served (Watch or another); a sans-I/O source of messages."""

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


@dataclass(frozen=True)
class Peer:
    """What a server knows of a call's client from its TLS handshake.

    Attributes:
        cert: The client's verified certificate, as :meth:`ssl.SSLSocket.getpeercert`
            gives it; None over plain text, or when the client presented none.
        cert_der: The same certificate, DER.
        certificates_sent: How many certificates the client sent (its own and any
            chain); 0 over plain text or when it sent none; None when it sent some
            but Python cannot count them (before 3.13).
    """

    cert: Mapping[str, Any] | None
    cert_der: bytes | None
    certificates_sent: int | None


# A client that showed no certificate (plain text, or a connection already gone).
_ANONYMOUS = Peer(None, None, 0)


class StreamHandler(Protocol[_RequestIn]):
    """Serves the calls of one server-streaming method."""

    def open_session(self, request: _RequestIn, peer: Peer) -> WatchSession:
        """Start serving one call.

        Args:
            request: The call's request, decoded.
            peer: What is known of the client.

        Raises:
            CuratorError: The call is refused with this status.
        """
        ...


@dataclass(frozen=True)
class StreamingMethod(Generic[_Request]):
    """A server-streaming method to serve: its request type and its handler.

    Attributes:
        request_type: The message class requests are decoded into.
        handler: Serves its calls (on the host's thread).
    """

    request_type: type[_Request]
    handler: StreamHandler[_Request]


@dataclass(frozen=True)
class PingPolicy:
    """How often a server lets clients ping, enforced as gRPC servers enforce it.

    A ping that comes sooner than ``min_interval`` after the client's previous one,
    with no DATA or HEADERS frame sent by the server in between, is a strike (a frame
    sent clears the strikes). After more than ``max_strikes`` strikes the server sends
    GOAWAY ``ENHANCE_YOUR_CALM`` with debug data ``too_many_pings`` and closes the
    connection. Open calls do not change the rule (gRPC servers are stricter without
    them; the Curator is not).

    Attributes:
        min_interval: Seconds the client must leave between pings on a quiet
            connection.
        max_strikes: Strikes tolerated before the connection is cut off.
    """

    min_interval: float
    max_strikes: int


CURATOR_PING_POLICY = PingPolicy(min_interval=1.0, max_strikes=2)
"""A real Curator's: it accepts client pings as often as once a second."""

GRPC_DEFAULT_PING_POLICY = PingPolicy(min_interval=300.0, max_strikes=2)
"""A gRPC server's at its defaults (grpc-go, gRPC's C core): one ping per 5 minutes."""


class PingStrikes:
    """One connection's record against a :class:`PingPolicy`; pure."""

    def __init__(self, policy: PingPolicy) -> None:
        self._policy = policy
        self._previous_ping: float | None = None
        self._strikes = 0
        self._sent_since_ping = False

    def frames_sent(self) -> None:
        """The server sent DATA or HEADERS."""
        self._sent_since_ping = True

    def ping_received(self, now: float) -> bool:
        """The client pinged at ``now`` (seconds); true when it must be cut off."""
        previous, self._previous_ping = self._previous_ping, now
        if self._sent_since_ping:
            self._sent_since_ping = False
            self._strikes = 0
        elif previous is not None and now - previous < self._policy.min_interval:
            self._strikes += 1
        return self._strikes > self._policy.max_strikes


def _grpc_error(error: CuratorError) -> grpclib.exceptions.GRPCError:
    return grpclib.exceptions.GRPCError(grpclib.const.Status(error.status.value), error.details)


class _WatchMethod:
    """A :class:`WatchHandler` as the :class:`StreamHandler` of Watch."""

    def __init__(self, handler: WatchHandler) -> None:
        self._handler = handler

    def open_session(self, request: WatchRequest, peer: Peer) -> WatchSession:
        return self._handler.open_session(request, peer_cert=peer.cert)


class _Service:
    """grpclib's handler mapping for a server's methods."""

    def __init__(self, server: WatchServer) -> None:
        self._server = server

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            path: grpclib.const.Handler(
                functools.partial(self._serve, method),
                grpclib.const.Cardinality.UNARY_STREAM,
                method.request_type,
                RawMessage,
            )
            for path, method in self._server.methods.items()
        }

    async def _serve(
        self, method: StreamingMethod[Any], call: grpclib.server.Stream[Any, bytes]
    ) -> None:
        bridge = self._server._bridge
        request = await call.recv_message()
        if request is None:
            raise grpclib.exceptions.GRPCError(
                grpclib.const.Status.INVALID_ARGUMENT, "no request was sent"
            )
        peer = self._server._peer_at(call.peer.addr())
        try:
            session = await bridge.call_host(method.handler.open_session, request, peer)
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


class _GatedTransport:
    """A server connection's transport that can go silent, like a partitioned network.

    Frozen, it reads nothing (what the client sends waits in the kernel, pings too)
    and holds back every write; thawed, it sends what it held and reads again. With
    ``strikes``, it tells them of each DATA or HEADERS frame written.
    """

    def __init__(self, transport: asyncio.Transport, strikes: PingStrikes | None) -> None:
        self._transport = transport
        self._strikes = strikes
        self._held: list[bytes] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def write(self, data: bytes) -> None:
        if self._strikes is not None and carries_data_or_headers(data):
            self._strikes.frames_sent()
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
    """A connection the server accepted, which its :class:`WatchServer` can freeze or drop.

    Attributes:
        peer: What its TLS handshake told of the client.
        address: The client's address, as grpclib gives it for each call.
    """

    transport: _GatedTransport
    peer = _ANONYMOUS
    address: object = None

    def __init__(self, owner: WatchServer, server: grpclib.server.Server, base: H2Protocol) -> None:
        super().__init__(*protocol_args(base))
        self.owner = owner
        self.server = server
        policy = owner.ping_policy
        self._strikes = None if policy is None else PingStrikes(policy)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = _GatedTransport(cast(asyncio.Transport, transport), self._strikes)
        self.address = transport.get_extra_info("peername")
        self.peer = _peer_of(transport.get_extra_info("ssl_object"))
        accepted = self.owner._connection_made(self)
        super().connection_made(cast(asyncio.Transport, self.transport))
        if not accepted:
            self.transport.abort()
            return
        on_ping_received(self, self._ping_received)

    def _ping_received(self) -> None:
        self.owner._ping_received()
        if self._strikes is not None and self._strikes.ping_received(time.monotonic()):
            self.owner._goaway_sent()
            send_goaway(self, ErrorCodes.ENHANCE_YOUR_CALM, b"too_many_pings")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.owner._connection_lost(self)
        super().connection_lost(exc)


def _peer_of(ssl_object: _ssl.SSLObject | None) -> Peer:
    if ssl_object is None:
        return _ANONYMOUS
    cert = ssl_object.getpeercert() or None
    if cert is None:
        # A certificate the server asked for is verified when sent: none was sent.
        # (Python 3.13.0's get_unverified_chain() fails on a server then.)
        return _ANONYMOUS
    der = ssl_object.getpeercert(binary_form=True)
    if sys.version_info >= (3, 13):
        return Peer(cert, der, len(ssl_object.get_unverified_chain() or ()))
    return Peer(cert, der, None)


class WatchServer:
    """A running gRPC server with network fault controls; see :func:`serve_grpc`.

    The controls act on connections, below gRPC: freeze them (a silent network
    partition), drop them (the server's process killed), say GOAWAY and close them
    (a graceful shutdown), stop listening (nothing there), start again on the same
    port. Call them from the host library (Trio or asyncio); they take effect on the
    server's loop, in the order given.

    Attributes:
        host: The address it listens on.
        port: The port it listens on (the same across restarts).
        methods: What it serves, by gRPC method path. Other paths are answered
            ``UNIMPLEMENTED``. A change takes effect when it next starts listening
            (:meth:`accept_connections`, :meth:`restart`).
        ping_policy: How often clients may ping; None lets them ping at will.
    """

    def __init__(
        self,
        methods: Mapping[str, StreamingMethod[Any]],
        host: str,
        port: int,
        ssl: _ssl.SSLContext | None,
        bridge: Bridge,
        ping_policy: PingPolicy | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.methods = methods
        self.ping_policy = ping_policy
        self._ssl = ssl
        self._bridge = bridge
        self._server: grpclib.server.Server | None = None
        # Shared with the loop side, under the lock.
        self._lock = threading.Lock()
        self._connections: set[_ServerConnection] = set()
        self._accepted = 0
        self._pings = 0
        self._too_many_pings = 0
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
    def pings_received(self) -> int:
        """How many HTTP/2 pings clients have sent it (acks not counted), across restarts."""
        return self._pings

    @property
    def pings_refused(self) -> int:
        """How many connections it has cut off for pinging too often (see :class:`PingPolicy`)."""
        return self._too_many_pings

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

    def goaway(self, error_code: int = ErrorCodes.NO_ERROR, debug: bytes = b"") -> None:
        """Send GOAWAY on every open connection, then close them, as a server shutting down.

        Calls still open on them are cut off after the GOAWAY; the server keeps
        listening (follow with :meth:`refuse_connections` for a server that is gone).

        Args:
            error_code: The HTTP/2 error code (:class:`h2.errors.ErrorCodes`).
            debug: The GOAWAY's debug data.
        """
        self._bridge.to_loop(_send_goaway, self._take_connections(), error_code, debug)

    async def refuse_connections(self) -> None:
        """Stop listening and drop every open connection (:meth:`drop_connections`).

        New connection attempts are refused until :meth:`accept_connections`. Returns
        once the calls that were open are torn down.
        """
        server, connections = self._stop_listening()
        self._bridge.to_loop(_abort, connections)
        if server is not None:
            await self._bridge.run(_stop_server, server, self._bridge.owns_loop)

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

    def _stop_listening(self) -> tuple[grpclib.server.Server | None, list[_ServerConnection]]:
        """Forget the listening server and take its connections, as one step.

        One step under the lock, so that a connection the loop takes on meanwhile is
        either refused or among those taken, never left behind.
        """
        with self._lock:
            server, self._server = self._server, None
            connections = list(self._connections)
            self._connections.clear()
        return server, connections

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
            [_Service(self)],
            codec=RawCodec(),
            wrap=lambda base: _ServerConnection(self, server, base),
        )
        # Set before listening: the first connection may come before start returns.
        self._server = server
        await server.start(sock=sock, ssl=self._ssl)

    async def _close(self) -> None:
        server, connections = self._stop_listening()
        # asyncio's Server.close() leaves accepted connections open (and since 3.12.1
        # wait_closed() waits for them): close them as an exiting process would.
        self._bridge.to_loop(_close, connections)
        if server is not None:
            await self._bridge.run(_stop_server, server, self._bridge.owns_loop)

    # Loop side.

    def _connection_made(self, connection: _ServerConnection) -> bool:
        """Take on a new connection; false if it must be dropped at once."""
        with self._lock:
            if connection.server is not self._server:
                # Accepted before the server stopped listening, its TLS handshake done
                # only after: it goes the way of the others.
                return False
            self._accepted += 1
            self._connections.add(connection)
            freeze = self._freeze_new
        if freeze:
            connection.transport.freeze()
        return True

    def _connection_lost(self, connection: _ServerConnection) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _ping_received(self) -> None:
        with self._lock:
            self._pings += 1

    def _goaway_sent(self) -> None:
        with self._lock:
            self._too_many_pings += 1

    def _peer_at(self, address: object) -> Peer:
        """What is known of the client at ``address`` (a call's ``peer.addr()``)."""
        with self._lock:
            for connection in self._connections:
                if connection.address == address:
                    return connection.peer
        return _ANONYMOUS


def _abort(connections: list[_ServerConnection]) -> None:
    for connection in connections:
        connection.transport.abort()


def _close(connections: list[_ServerConnection]) -> None:
    for connection in connections:
        connection.transport.close()


def _send_goaway(connections: list[_ServerConnection], error_code: int, debug: bytes) -> None:
    for connection in connections:
        send_goaway(connection, error_code, debug)


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


async def _stop_server(server: grpclib.server.Server, drop_the_rest: bool = False) -> None:
    server.close()
    await server.wait_closed()
    if drop_the_rest:
        # Connections still in their TLS handshake are not the server's yet.
        abort_transports(asyncio.get_running_loop())


@contextlib.asynccontextmanager
async def serve_grpc(
    methods: Mapping[str, StreamingMethod[Any]],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl: _ssl.SSLContext | None = None,
    ping_policy: PingPolicy | None = None,
) -> AsyncIterator[WatchServer]:
    """Serve server-streaming ``methods`` until the block ends.

    On exit the server stops listening and closes every connection, after the data
    already queued on it (what a frozen connection held back is dropped with it).

    Args:
        methods: What to serve, by gRPC method path (``/package.Service/Method``);
            handlers are called on the host's thread only.
        host: Address to listen on.
        port: Port to listen on; 0 picks a free one.
        ssl: A server TLS context; None for plain text.
        ping_policy: How often clients may ping; None (the default) lets them ping
            at will.

    Yields:
        The server, listening; its fault controls act on its connections.
    """
    async with open_bridge() as bridge:
        sock = _listening_socket(host, port)
        server = WatchServer(methods, host, sock.getsockname()[1], ssl, bridge, ping_policy)
        await server._listen(sock)
        try:
            yield server
        finally:
            with anyio.CancelScope(shield=True):
                await server._close()


@contextlib.asynccontextmanager
async def serve_watch(
    handler: WatchHandler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl: _ssl.SSLContext | None = None,
    ping_policy: PingPolicy | None = None,
) -> AsyncIterator[WatchServer]:
    """Serve the Curator's Watch method with ``handler`` until the block ends.

    :func:`serve_grpc` with that one method; see there.

    Args:
        handler: Decides what each call receives; called on the host's thread only.
        host: Address to listen on.
        port: Port to listen on; 0 picks a free one.
        ssl: A server TLS context; None for plain text.
        ping_policy: How often clients may ping; None lets them ping at will.

    Yields:
        The server, listening; its fault controls act on its connections.
    """
    methods = {WATCH_PATH: StreamingMethod(WatchRequest, _WatchMethod(handler))}
    async with serve_grpc(methods, host, port, ssl=ssl, ping_policy=ping_policy) as server:
        yield server
