"""The gRPC client: :func:`open_curator` and the Watch calls behind a :class:`Curator`.

One asyncio coroutine (:func:`_pump`) owns each call from start to end, run through
the connection's :class:`~trionodes._transport.bridge.Bridge`, so a cancel waits
until the call is torn down and RST_STREAM has gone out. It hands messages to the
host side through a :class:`MessageStream`: appended under a lock and woken once per
batch, not once per message, which matters when the loop is on another thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl as _ssl
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import cast

import anyio
import betterproto2
import grpclib.config
import grpclib.const

from .._core.endpoints import Endpoint
from .._curator import Curator
from .._errors import ProtocolError, TrionodesError
from .._groups import sole_exception
from .._proto.metropolis.node.core.curator.proto.api import WatchRequest
from .bridge import Bridge, open_bridge
from .codec import WATCH_PATH, RawCodec, RawMessage
from .errors import map_error
from .grpclib_private import TracedChannel, configuration

_log = logging.getLogger("trionodes")

# How many received messages may wait for the host side before the call stops reading
# (and HTTP/2 flow control makes the server wait).
_QUEUE_LIMIT = 64

# gRPC's default limit on received messages; a Curator stays well under it.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class MessageStream:
    """Raw messages of one call: written on the loop side, read on the host side.

    The two sides may be on different threads; they share only a deque and a few
    flags under a lock, and wake each other through the bridge: the host side once
    per batch of messages, at the end of the loop's turn that brought them.
    """

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self._lock = threading.Lock()
        # Shared, under the lock.
        self._incoming: collections.deque[bytes] = collections.deque()
        self._ready: anyio.Event | None = None
        self._space: asyncio.Future[None] | None = None
        self._ended = False
        self._error: TrionodesError | None = None
        # Host side only: the batch being handed out.
        self._batch: collections.deque[bytes] = collections.deque()

    async def receive(self) -> bytes:
        """The next message.

        Raises:
            anyio.EndOfStream: The server ended the call with status OK.
            TrionodesError: The call failed (mapped from the transport's error).
        """
        if self._batch:
            return self._batch.popleft()
        while True:
            with self._lock:
                if self._incoming:
                    self._batch, self._incoming = self._incoming, self._batch
                    space, self._space = self._space, None
                    ready = None
                elif self._ended:
                    if self._error is not None:
                        raise self._error
                    raise anyio.EndOfStream
                else:
                    space = None
                    ready = self._ready = anyio.Event()
            if ready is None:
                if space is not None:
                    self._bridge.to_loop(_release, space)
                return self._batch.popleft()
            await ready.wait()

    # Loop side.

    async def put(self, message: bytes) -> None:
        """Hand ``message`` over; waits while the host side has a full queue unread."""
        with self._lock:
            self._incoming.append(message)
            ready, self._ready = self._ready, None
            space = None
            if len(self._incoming) >= _QUEUE_LIMIT:
                space = self._space = self._bridge.loop.create_future()
        if ready is not None:
            # Woken once the pump has handed over every message already received,
            # not once per message: each wake of another thread costs a switch.
            self._bridge.loop.call_soon(self._bridge.to_host, ready.set)
        if space is not None:
            await space

    def end(self, error: TrionodesError | None) -> None:
        """The call ended: cleanly (None) or with ``error``."""
        with self._lock:
            self._ended = True
            self._error = error
            ready, self._ready = self._ready, None
        if ready is not None:
            self._bridge.to_host(ready.set)


def _release(space: asyncio.Future[None]) -> None:
    if not space.done():
        space.set_result(None)


async def _pump(
    channel: TracedChannel,
    path: str,
    request: betterproto2.Message,
    stream: MessageStream,
    where: str,
    max_message_bytes: int,
) -> None:
    """Own one server-streaming call on the loop side, feeding ``stream`` until it ends."""
    try:
        async with channel.request(
            path, grpclib.const.Cardinality.UNARY_STREAM, type(request), RawMessage
        ) as call:
            await call.send_message(request, end=True)
            while (message := await call.recv_message()) is not None:
                data = cast(bytes, message)  # raw, by RawCodec
                if len(data) > max_message_bytes:
                    raise ProtocolError(
                        f"{where} sent a message of {len(data)} bytes, over the limit "
                        f"of {max_message_bytes}"
                    )
                await stream.put(data)
    except Exception as exc:
        error = map_error(exc, where, tls=channel.tls, trace=channel.trace())
        if error is not exc:
            error.__cause__ = exc
        stream.end(error)
    else:
        stream.end(None)


class Connection:
    """Server-streaming calls over one grpclib channel: a :class:`StreamSource`.

    Attributes:
        host: The server's host.
        port: The server's port.
        closed: The connection was closed; opening a call raises ``RuntimeError``.
    """

    def __init__(
        self,
        bridge: Bridge,
        channel: TracedChannel,
        host: str,
        port: int,
        max_message_bytes: int,
        opened_by: str,
    ) -> None:
        self._bridge = bridge
        self._channel = channel
        self._max_message_bytes = max_message_bytes
        self._opened_by = opened_by
        self.host = host
        self.port = port
        self.leader_id: str | None = None
        self.closed = False

    @property
    def where(self) -> str:
        """``host:port``, for messages."""
        return str(Endpoint(self.host, self.port))

    def open_stream(self, request: WatchRequest) -> AbstractAsyncContextManager[MessageStream]:
        """Start a Watch call; leaving the block cancels it."""
        return self.open_call(WATCH_PATH, request)

    @contextlib.asynccontextmanager
    async def open_call(
        self, path: str, request: betterproto2.Message
    ) -> AsyncIterator[MessageStream]:
        """Start the server-streaming call ``path``; leaving the block cancels it."""
        if self.closed:
            raise RuntimeError(
                f"the connection to {self.where} is closed: its `async with "
                f"{self._opened_by}(...)` block has ended"
            )
        stream = MessageStream(self._bridge)
        # The pump never raises: what the block raises comes out as itself.
        with sole_exception():
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(
                    self._bridge.run,
                    _pump,
                    self._channel,
                    path,
                    request,
                    stream,
                    self.where,
                    self._max_message_bytes,
                )
                try:
                    yield stream
                finally:
                    tasks.cancel_scope.cancel()

    async def aclose(self) -> None:
        """Close the channel and wait until its sockets are closed (shielded)."""
        self.closed = True
        with anyio.CancelScope(shield=True):
            await self._bridge.run(self._channel.aclose)


async def make_channel(
    host: str,
    port: int,
    ssl: _ssl.SSLContext | None,
    config: grpclib.config.Configuration,
    verify: Callable[[bytes], None] | None = None,
    on_slower_pings: Callable[[float], None] | None = None,
) -> TracedChannel:
    """A traced channel to ``host:port`` (run it on the loop: grpclib looks it up).

    A server refusing pings as too frequent is said once in the log, and then told
    to ``on_slower_pings`` (the new interval), to remember for that server.
    """

    def slower_pings(interval: float) -> None:
        _log.warning(
            "%s refused keepalive pings as too frequent (GOAWAY too_many_pings); "
            "pinging every %g s from now on",
            Endpoint(host, port),
            interval,
        )
        if on_slower_pings is not None:
            on_slower_pings(interval)

    return TracedChannel(
        host,
        port,
        ssl=ssl,
        codec=RawCodec(),
        config=config,
        verify=verify,
        on_slower_pings=slower_pings,
    )


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

    Works from Trio and from asyncio, including inside anyio task groups on either
    backend. Under Trio, the gRPC client runs on a private asyncio loop in a worker
    thread that this connection starts and, when the block ends, stops and joins.
    The connection is made lazily by the first call and remade by the next call
    after it breaks; it is closed when the block ends.

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
        The connection, to pass to :func:`watch_nodes`, :func:`open_node_watch`,
        :func:`open_node_changes` and :func:`watch_node`. It belongs to the
        ``trio.run`` (or asyncio loop) that opened it; using it after the block has
        ended raises ``RuntimeError``.

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
        config = configuration(server_hostname, keepalive, keepalive_timeout)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad keepalive settings: {exc}") from None
    async with open_bridge() as bridge:
        channel = await bridge.run(make_channel, host, port, ssl, config)
        connection = Connection(bridge, channel, host, port, max_message_bytes, "open_curator")
        try:
            yield Curator._over(connection)
        finally:
            await connection.aclose()
