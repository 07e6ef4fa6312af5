"""gRPC transport: the only module that knows about asyncio, grpclib and trio-asyncio.

grpclib is asyncio-only. Under Trio it runs on a trio-asyncio loop; under asyncio it
runs natively. Everything else in trionodes is written against anyio and sees only:

* :func:`open_curator` / :class:`Curator` and :meth:`Curator.open_stream`, which
  yields a :class:`MessageStream` of raw serialized ``WatchEvent`` messages;
* :func:`serve_watch`, a real gRPC server driven by a sans-I/O :class:`WatchHandler`
  (the fake Curator of :mod:`trionodes.testing`).

Crossing from the host library into asyncio happens in one place, :class:`_Bridge`.
One asyncio coroutine owns each call from start to end (so a cancel waits until the
call is torn down and RST_STREAM has gone out), and hands each message over with a
plain synchronous call into a bounded queue: no host-library coroutine is ever awaited
from the asyncio side, so no cancellation can be lost in the crossing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl as _ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar, cast

import anyio
import grpclib.const
import grpclib.exceptions
import grpclib.server
import sniffio
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.encoding.proto import ProtoCodec
from grpclib.protocol import H2Protocol

from ._errors import (
    ConnectionLost,
    CuratorError,
    LikelyTLSError,
    ProtocolError,
    StatusCode,
    TLSError,
    TrionodesError,
)
from ._groups import sole_exception
from ._proto.metropolis.node.core.curator.proto.api import WatchRequest

WATCH_PATH = "/metropolis.node.core.curator.proto.api.Curator/Watch"

_T = TypeVar("_T")

# How many received messages may wait for the host side before the call stops reading
# (and HTTP/2 flow control makes the server wait).
_QUEUE_LIMIT = 16

# gRPC's default limit on received messages; a Curator stays well under it.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class _RawMessage:
    """Marker message type: the codec hands its bytes over undecoded."""


class _Codec(ProtoCodec):
    """Protobuf codec that passes serialized messages through as ``bytes``.

    Decoding is left to the caller (which skips nodes it has seen), and a server may
    send pre-encoded or deliberately broken messages.
    """

    def encode(self, message: Any, message_type: Any) -> bytes:
        if isinstance(message, bytes):
            return message
        return super().encode(message, message_type)

    def decode(self, data: bytes, message_type: Any) -> Any:
        if message_type is _RawMessage:
            return data
        return super().decode(data, message_type)


class _Bridge(Protocol):
    """Runs asyncio coroutine functions from the host async library."""

    async def run(self, fn: Callable[..., Awaitable[_T]], *args: Any) -> _T:
        """Run ``fn(*args)`` on the asyncio loop until it returns; cancellable."""
        ...


class _NativeBridge:
    """The host library is asyncio itself."""

    async def run(self, fn: Callable[..., Awaitable[_T]], *args: Any) -> _T:
        return await fn(*args)


class _TrioAsyncioBridge:
    """The host library is Trio; asyncio runs on a trio-asyncio loop."""

    async def run(self, fn: Callable[..., Awaitable[_T]], *args: Any) -> _T:
        import trio_asyncio

        result: _T = await trio_asyncio.aio_as_trio(fn)(*args)
        return result


@contextlib.asynccontextmanager
async def _open_bridge() -> AsyncIterator[_Bridge]:
    library = sniffio.current_async_library()
    if library == "asyncio":
        yield _NativeBridge()
        return
    if library != "trio":
        raise RuntimeError(f"trionodes runs on Trio or asyncio, not {library}")
    import trio_asyncio

    if trio_asyncio.current_loop.get() is not None:
        yield _TrioAsyncioBridge()
        return
    # The loop's own nurseries wrap whatever the block raises.
    with sole_exception():
        async with trio_asyncio.open_loop():
            yield _TrioAsyncioBridge()


class _TracedProtocol(H2Protocol):
    """grpclib's HTTP/2 protocol, remembering how its connection went.

    grpclib drops the exception a connection was lost with (its streams only see
    "Connection lost"), and with it the TLS alert by which a server rejects a client
    certificate under TLS 1.3, where the client's side of the handshake completes
    before the server has checked the certificate. Kept to explain failures.
    """

    # The transport is up (with TLS: the handshake is done on the client's side).
    established = False
    # The server sent some HTTP/2 data (decrypted application data, with TLS).
    received = False
    # The client closed the connection while it was up: grpclib's keepalive does that
    # when a ping goes unanswered (closing the channel does too, but then no call
    # is left to report it).
    closed_by_client = False
    lost_with: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.established = True
        super().connection_made(transport)
        close = self.connection.close

        def close_by_client() -> None:
            if not self.connection.is_closing():
                self.closed_by_client = True
            close()

        self.connection.close = close_by_client  # type: ignore[method-assign]

    def data_received(self, data: bytes) -> None:
        self.received = True
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost_with = exc
        super().connection_lost(exc)


class _Channel(Channel):
    """A grpclib Channel that keeps its latest connection's :class:`_TracedProtocol`."""

    last_connection: _TracedProtocol | None = None

    def __init__(
        self, host: str, port: int, ssl: _ssl.SSLContext | None, config: Configuration
    ) -> None:
        super().__init__(host, port, ssl=ssl, codec=_Codec(), config=config)
        self.tls = ssl is not None

    def _protocol_factory(self) -> H2Protocol:
        # Called once per connection attempt, after the TCP connection is made.
        base = super()._protocol_factory()
        protocol = _TracedProtocol(base.handler, base.config, base.h2_config)
        self.last_connection = protocol
        return protocol


# OpenSSL reasons for a TLS client that got something other than TLS back.
_NOT_TLS_REASONS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "UNKNOWN_PROTOCOL",
        "PACKET_LENGTH_TOO_LONG",
        "RECORD_LAYER_FAILURE",
        "HTTP_REQUEST",
    }
)
# X509 verify codes.
_HOSTNAME_MISMATCH = frozenset({62, 64})  # host name, IP address
_OUT_OF_VALIDITY = frozenset({9, 10})  # not yet valid, expired
_REJECTED_CERT = "the Curator rejected the client certificate"
_LIKELY_CERT_REJECTION = (
    "the Curator may have rejected the client certificate "
    "(missing, expired or not issued by the cluster CA)"
)


def _map_tls_error(exc: _ssl.SSLError, where: str) -> TrionodesError:
    """Translate an ``ssl.SSLError`` from a connection to ``where``."""
    failed = f"TLS handshake with {where} failed"
    if isinstance(exc, _ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        if exc.verify_code in _HOSTNAME_MISMATCH:
            hint = (
                "connect by a name the certificate holds, or pass server_hostname= to "
                "open_curator, or check_hostname=False to client_ssl_context"
            )
        elif exc.verify_code in _OUT_OF_VALIDITY:
            hint = "check the clocks, or renew the Curator's certificate"
        else:
            hint = "is `ca` the cluster CA?"
        return TLSError(
            f"{failed}: the Curator's certificate could not be verified: {detail} ({hint})"
        )
    reason = exc.reason or ""
    if isinstance(exc, _ssl.SSLEOFError) or reason == "UNEXPECTED_EOF_WHILE_READING":
        return LikelyTLSError(
            f"connection to {where} was closed during the TLS handshake: "
            f"{_LIKELY_CERT_REJECTION}, or may not serve TLS"
        )
    if reason in _NOT_TLS_REASONS:
        return TLSError(f"{failed}: the Curator does not seem to serve TLS there ({reason})")
    if "ALERT" in reason:
        if reason.endswith("CERTIFICATE_REQUIRED"):
            return TLSError(f"{failed}: {_REJECTED_CERT}: none was presented ({reason})")
        if reason.endswith("CERTIFICATE_EXPIRED"):
            return TLSError(f"{failed}: {_REJECTED_CERT}: it has expired ({reason})")
        if reason.endswith("UNKNOWN_CA"):
            return TLSError(
                f"{failed}: {_REJECTED_CERT}: it was not issued by the cluster CA ({reason})"
            )
        if "CERTIFICATE" in reason or reason.endswith("ACCESS_DENIED"):
            return TLSError(f"{failed}: {_REJECTED_CERT} ({reason})")
        if reason.endswith("HANDSHAKE_FAILURE"):
            return TLSError(
                f"{failed}: the Curator refused the handshake, perhaps for want of a "
                f"client certificate ({reason})"
            )
        return TLSError(f"{failed}: the Curator sent a TLS alert ({reason})")
    return TLSError(f"TLS with {where} failed: {exc}")


def _explain_lost(channel: _Channel, where: str) -> TrionodesError | None:
    """Say why the latest connection of ``channel`` was lost, if something is known."""
    connection = channel.last_connection
    if connection is not None and connection.closed_by_client:
        # Not a TLS matter, whatever was (not) received before.
        return ConnectionLost(
            f"connection to {where} closed as dead: the Curator did not answer a "
            f"keepalive ping in time"
        )
    if connection is None or connection.received:
        return None
    if isinstance(connection.lost_with, _ssl.SSLError):
        return _map_tls_error(connection.lost_with, where)
    if channel.tls and connection.established:
        return LikelyTLSError(
            f"connection to {where} was closed right after the TLS handshake, before "
            f"the Curator sent anything: {_LIKELY_CERT_REJECTION}"
        )
    if not channel.tls:
        return LikelyTLSError(
            f"connection to {where} was closed before the Curator sent anything: if it "
            f"serves TLS, pass ssl=trionodes.client_ssl_context(...) to open_curator"
        )
    return None


def _map_error(exc: BaseException, where: str, channel: _Channel) -> TrionodesError:
    """Translate a transport exception into ours (the original becomes the cause).

    TLS failures that retrying cannot fix become :class:`TLSError`; connections that
    merely close during or right after the TLS handshake become a
    :class:`LikelyTLSError` naming TLS and the likely cause (the watches retry it a
    few times). Errors that are already ours pass through.
    """
    if isinstance(exc, TrionodesError):
        return exc
    if isinstance(exc, grpclib.exceptions.GRPCError):
        return CuratorError(StatusCode(exc.status.value), exc.message or "")
    if isinstance(exc, grpclib.exceptions.StreamTerminatedError):
        explained = _explain_lost(channel, where)
        if explained is not None:
            connection = channel.last_connection
            if connection is not None and exc.__cause__ is None:
                # Keep the real reason (grpclib drops it) in the chain.
                exc.__cause__ = connection.lost_with
            return explained
        return ConnectionLost(f"stream to {where} terminated: {exc}")
    if isinstance(exc, grpclib.exceptions.ProtocolError):
        return ProtocolError(f"HTTP/2 protocol error from {where}: {exc}")
    if isinstance(exc, _ssl.SSLError):
        return _map_tls_error(exc, where)
    if isinstance(exc, asyncio.TimeoutError):
        return ConnectionLost(f"call to {where} timed out")
    if (
        channel.tls
        and isinstance(exc, ConnectionError)
        and not isinstance(exc, ConnectionRefusedError)
    ):
        # Raised by connecting, after the TCP connection was made: asyncio reports a
        # connection closed mid-handshake so (an asyncio server sends no TLS alert).
        return LikelyTLSError(
            f"connection to {where} was closed during the TLS handshake: "
            f"{_LIKELY_CERT_REJECTION}, or may not serve TLS"
        )
    if isinstance(exc, OSError):
        return ConnectionLost(f"connection to {where} failed: {exc}")
    return ConnectionLost(f"call to {where} failed: {exc!r}")


class MessageStream:
    """Raw messages of one server-streaming call, received on the host side.

    Written to from the asyncio side by the call's pump, read from the host side.
    Both run on one thread, so plain synchronous calls suffice to cross.
    """

    def __init__(self) -> None:
        self._messages: collections.deque[bytes] = collections.deque()
        self._ready: anyio.Event | None = None
        self._space: asyncio.Future[None] | None = None
        self._ended = False
        self._error: TrionodesError | None = None

    async def receive(self) -> bytes:
        """The next message.

        Raises:
            anyio.EndOfStream: The server ended the call with status OK.
            TrionodesError: The call failed (mapped from the transport's error).
        """
        while not self._messages:
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise anyio.EndOfStream
            self._ready = anyio.Event()
            await self._ready.wait()
        message = self._messages.popleft()
        space = self._space
        if space is not None and len(self._messages) < _QUEUE_LIMIT:
            self._space = None
            if not space.done():
                space.set_result(None)
        return message

    # asyncio side

    def _wake(self) -> None:
        if self._ready is not None:
            self._ready.set()
            self._ready = None

    async def _put(self, message: bytes) -> None:
        self._messages.append(message)
        self._wake()
        if len(self._messages) >= _QUEUE_LIMIT:
            self._space = asyncio.get_running_loop().create_future()
            await self._space

    def _end(self, error: TrionodesError | None) -> None:
        self._ended = True
        self._error = error
        self._wake()


async def _pump(
    channel: _Channel,
    request: WatchRequest,
    stream: MessageStream,
    where: str,
    max_message_bytes: int,
) -> None:
    """Own one Watch call on the asyncio side, feeding ``stream`` until it ends."""
    try:
        async with channel.request(
            WATCH_PATH, grpclib.const.Cardinality.UNARY_STREAM, WatchRequest, _RawMessage
        ) as call:
            await call.send_message(request, end=True)
            while (message := await call.recv_message()) is not None:
                data = cast(bytes, message)  # raw, by _Codec
                if len(data) > max_message_bytes:
                    raise ProtocolError(
                        f"{where} sent a message of {len(data)} bytes, over the limit "
                        f"of {max_message_bytes}"
                    )
                await stream._put(data)
    except Exception as exc:
        error = _map_error(exc, where, channel)
        if error is not exc:
            error.__cause__ = exc
        stream._end(error)
    else:
        stream._end(None)


class Curator:
    """A connection to a Curator; make one with :func:`open_curator`.

    Attributes:
        host: The Curator's host name or address.
        port: The Curator's port.
    """

    def __init__(
        self, bridge: _Bridge, channel: _Channel, host: str, port: int, max_message_bytes: int
    ) -> None:
        self._bridge = bridge
        self._channel = channel
        self._max_message_bytes = max_message_bytes
        self.host = host
        self.port = port

    def __repr__(self) -> str:
        return f"<Curator {self.host}:{self.port}>"

    @contextlib.asynccontextmanager
    async def open_stream(self, request: WatchRequest) -> AsyncIterator[MessageStream]:
        """Start a Watch call; its raw messages arrive on the yielded stream.

        Leaving the block cancels the call (the server sees it cancelled).
        """
        stream = MessageStream()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(
                self._bridge.run,
                _pump,
                self._channel,
                request,
                stream,
                f"{self.host}:{self.port}",
                self._max_message_bytes,
            )
            try:
                yield stream
            finally:
                tasks.cancel_scope.cancel()


async def _make_channel(
    host: str, port: int, ssl: _ssl.SSLContext | None, config: Configuration
) -> _Channel:
    # Built inside the asyncio loop: Channel looks the loop up when constructed.
    return _Channel(host, port, ssl, config)


def _configuration(
    server_hostname: str | None, keepalive: float | None, keepalive_timeout: float
) -> Configuration:
    if keepalive is None:
        return Configuration(ssl_target_name_override=server_hostname)
    # grpclib's keepalive settings are private. By default it stops pinging after two
    # pings without data sent, which a watch never sends after its request: allow
    # any number, no closer together than half the interval.
    return Configuration(
        ssl_target_name_override=server_hostname,
        _keepalive_time=keepalive,
        _keepalive_timeout=keepalive_timeout,
        _http2_max_pings_without_data=0,
        _http2_min_sent_ping_interval_without_data=keepalive / 2,
    )


async def _close_channel(channel: Channel) -> None:
    channel.close()


@contextlib.asynccontextmanager
async def open_curator(
    host: str,
    port: int,
    *,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    keepalive: float | None = 20.0,
    keepalive_timeout: float = 10.0,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> AsyncIterator[Curator]:
    """Connect to a Curator.

    Works from Trio (through a trio-asyncio loop: the caller's if one is open, else
    one opened here) and from asyncio, including inside anyio task groups on either
    backend. The connection is made lazily by the first call and remade by the next
    call after it breaks; it is closed when the block ends.

    Args:
        host: The Curator's host name or address.
        port: The Curator's port.
        ssl: A client TLS context, for example from :func:`client_ssl_context`; None
            for plain text.
        server_hostname: With ``ssl``, the name the Curator's certificate must hold
            (and the TLS SNI name), when it differs from ``host``; for example when
            connecting by IP address to a Curator whose certificate names a host.
        keepalive: While a call is open, send an HTTP/2 ping after this many seconds
            without a ping; None sends none. With ``keepalive_timeout``, this bounds
            how long a dead connection that sends nothing (a silent network
            partition) goes unnoticed: 30 s by default. The watches then reconnect.
            A server may limit how often it accepts pings (grpc-go's default
            enforcement allows one per 5 minutes, and answers more with GOAWAY,
            which the watches handle as a fault); raise this to match.
        keepalive_timeout: Seconds to wait for a ping's answer before closing the
            connection as dead.
        max_message_bytes: A received message larger than this fails its call
            with :class:`ProtocolError` (the watches reconnect); 4 MiB, gRPC's
            default, unless given.

    Yields:
        The connection, to pass to :func:`watch_nodes`, :func:`open_node_changes`
        and :func:`watch_node`.

    Raises:
        ValueError: ``server_hostname`` without ``ssl``, or a setting out of range.

    TLS failures surface from the watches: :class:`TLSError` when retrying cannot
    help (certificate not verifiable, client certificate rejected with a TLS alert,
    no TLS spoken). A connection that just closes during or right after the
    handshake, without saying why, is tried again a few times (see
    :attr:`RetryPolicy.tls_closures`) before it, too, ends the watch as a
    :class:`TLSError`.
    """
    if server_hostname is not None and ssl is None:
        raise ValueError("server_hostname needs ssl")
    if max_message_bytes <= 0:
        raise ValueError("max_message_bytes must be positive")
    try:
        config = _configuration(server_hostname, keepalive, keepalive_timeout)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad keepalive settings: {exc}") from None
    async with _open_bridge() as bridge:
        channel = await bridge.run(_make_channel, host, port, ssl, config)
        try:
            yield Curator(bridge, channel, host, port, max_message_bytes)
        finally:
            with anyio.CancelScope(shield=True):
                await bridge.run(_close_channel, channel)


# Server side: the fake Curator's transport.


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


class _WatchService:
    """grpclib handler mapping for the Curator service, over a :class:`WatchHandler`."""

    def __init__(self, handler: WatchHandler) -> None:
        self._handler = handler

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            WATCH_PATH: grpclib.const.Handler(
                self._watch, grpclib.const.Cardinality.UNARY_STREAM, WatchRequest, _RawMessage
            )
        }

    async def _watch(self, call: grpclib.server.Stream[WatchRequest, bytes]) -> None:
        request = await call.recv_message()
        if request is None:
            raise grpclib.exceptions.GRPCError(
                grpclib.const.Status.INVALID_ARGUMENT, "no WatchRequest was sent"
            )
        try:
            session = self._handler.open_session(request, peer_cert=call.peer.cert() or None)
        except CuratorError as exc:
            raise _grpc_error(exc) from None
        wake = asyncio.Event()
        session.set_waker(wake.set)
        cancelled = False
        try:
            while True:
                wake.clear()
                items = session.take()
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
            session.close(cancelled)


def _grpc_error(error: CuratorError) -> grpclib.exceptions.GRPCError:
    return grpclib.exceptions.GRPCError(grpclib.const.Status(error.status.value), error.details)


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

    def __init__(self, server: _Server, base: H2Protocol) -> None:
        super().__init__(base.handler, base.config, base.h2_config)
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = _GatedTransport(cast(asyncio.Transport, transport))
        accepted = self.server.owner._connection_made(self)
        super().connection_made(cast(asyncio.Transport, self.transport))
        if not accepted:
            self.transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.server.owner._connection_lost(self)
        super().connection_lost(exc)


class _Server(grpclib.server.Server):
    """grpclib's server, accepting connections as :class:`_ServerConnection`."""

    def __init__(self, owner: WatchServer, handler: WatchHandler) -> None:
        super().__init__([_WatchService(handler)], codec=_Codec())
        self.owner = owner

    def _protocol_factory(self) -> H2Protocol:
        return _ServerConnection(self, super()._protocol_factory())


class WatchServer:
    """A running gRPC server with network fault controls; see :func:`serve_watch`.

    The controls act on connections, below gRPC: freeze them (a silent network
    partition), drop them (the server's process killed), stop listening (nothing
    there), start again on the same port. Call them from the host library (Trio or
    asyncio).

    Attributes:
        host: The address it listens on.
        port: The port it listens on (the same across restarts).
        connections_accepted: How many connections it has accepted, across restarts.
    """

    def __init__(
        self,
        handler: WatchHandler,
        host: str,
        port: int,
        ssl: _ssl.SSLContext | None,
        bridge: _Bridge,
    ) -> None:
        self.host = host
        self.port = port
        self.connections_accepted = 0
        self._handler = handler
        self._ssl = ssl
        self._bridge = bridge
        self._server: _Server | None = None
        self._connections: set[_ServerConnection] = set()
        self._frozen = False
        self._freeze_new = False

    @property
    def listening(self) -> bool:
        """Whether it accepts connections (false after :meth:`refuse_connections`)."""
        return self._server is not None

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
        self._freeze_new = new_connections
        for connection in self._connections:
            connection.transport.freeze()

    def thaw(self) -> None:
        """End :meth:`freeze`: send what was held back and read again."""
        self._frozen = self._freeze_new = False
        for connection in self._connections:
            connection.transport.thaw()

    def drop_connections(self) -> None:
        """Abort every open connection at once: no trailers, no GOAWAY, unsent data lost.

        What a client sees when the server's process is killed. Calls on them are
        cancelled on the server's side; it keeps listening.
        """
        connections, self._connections = self._connections, set()
        for connection in connections:
            connection.transport.abort()

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

    async def _listen(self, sock: socket.socket) -> None:
        try:
            self._server = await self._bridge.run(
                _start_server, self, self._handler, sock, self._ssl
            )
        except BaseException:
            sock.close()
            raise

    async def _close(self) -> None:
        server, self._server = self._server, None
        connections, self._connections = self._connections, set()
        # asyncio's Server.close() leaves accepted connections open (and since 3.12.1
        # wait_closed() waits for them): close them as an exiting process would.
        for connection in connections:
            connection.transport.close()
        if server is not None:
            await self._bridge.run(_stop_server, server)

    def _connection_made(self, connection: _ServerConnection) -> bool:
        """Take on a new connection; false if it must be dropped at once."""
        if connection.server is not self._server:
            # Accepted before the server stopped listening, its TLS handshake done
            # only after: it goes the way of the others.
            return False
        self.connections_accepted += 1
        self._connections.add(connection)
        if self._freeze_new:
            connection.transport.freeze()
        return True

    def _connection_lost(self, connection: _ServerConnection) -> None:
        self._connections.discard(connection)


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


async def _start_server(
    owner: WatchServer, handler: WatchHandler, sock: socket.socket, ssl: _ssl.SSLContext | None
) -> _Server:
    server = _Server(owner, handler)
    await server.start(sock=sock, ssl=ssl)
    return server


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
        handler: Decides what each call receives.
        host: Address to listen on.
        port: Port to listen on; 0 picks a free one.
        ssl: A server TLS context; None for plain text.

    Yields:
        The server, listening; its fault controls act on its connections.
    """
    async with _open_bridge() as bridge:
        sock = _listening_socket(host, port)
        server = WatchServer(handler, host, sock.getsockname()[1], ssl, bridge)
        await server._listen(sock)
        try:
            yield server
        finally:
            with anyio.CancelScope(shield=True):
                await server._close()
