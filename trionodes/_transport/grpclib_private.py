"""Every use of grpclib's private parts, in one place.

grpclib offers no public hook for what trionodes needs: seeing how a connection went
(to explain failures grpclib reports only as "connection lost"), keepalive settings,
and a server whose connections can be frozen or dropped. These are reached through
``Channel._protocol_factory``, ``Server._protocol_factory``, the protocol's
``handler``/``config``/``h2_config`` attributes, its ``connection.close`` and
``connection._close_by_ping_handler``, its ``processor.processors`` table (for
GOAWAY, and on the server side for pings), its ``connection._connection`` (the h2
connection, to send a GOAWAY), the channel's ``_config`` and the ``_keepalive_*``
fields of ``Configuration``; and the fact that grpclib writes whole HTTP/2 frames
(what h2 hands it) in each ``transport.write``. ``tests/transport/test_grpclib_private.py``
checks each one against the installed grpclib, so an upgrade that changes them fails
loudly there instead of quietly here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import Callable, Collection
from typing import Protocol, cast

import grpclib.server
from grpclib._typing import IServable
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.encoding.base import CodecBase
from grpclib.protocol import AbstractHandler, H2Protocol
from h2.config import H2Configuration
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, PingReceived
from h2.exceptions import ProtocolError

from .._errors import TLSError, TrionodesError
from .errors import ConnectionTrace, GoAway

# How long closing a channel may wait for its sockets to close (seconds).
CLOSE_TIMEOUT = 5.0


def configuration(
    server_hostname: str | None, keepalive: float | None, keepalive_timeout: float
) -> Configuration:
    """A client configuration, with keepalive pings every ``keepalive`` seconds (or none).

    Raises:
        TypeError, ValueError: grpclib refused a setting.
    """
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


class ConnectionObserver(Protocol):
    """Told what happens to each connection of a channel."""

    def goaway_received(self, goaway: GoAway) -> None:
        """The server is closing a connection with ``goaway``."""

    def protocol_lost(self, protocol: TracedProtocol) -> None:
        """A connection has closed."""


class TracedProtocol(H2Protocol):
    """grpclib's HTTP/2 protocol, remembering how its connection went.

    grpclib drops the exception a connection was lost with (its streams only see
    "Connection lost"), the GOAWAY a server closed it with, and whether its own
    keepalive gave up; and with TLS 1.3 a server rejects a client certificate with
    an alert after the client's side of the handshake has completed. All kept here
    to explain failures. With ``verify``, the server's certificate is checked once
    the handshake is done, before anything is sent on the connection.
    """

    # The transport is up (with TLS: the handshake is done on the client's side).
    established = False
    # The server sent some HTTP/2 data (decrypted application data, with TLS).
    received = False
    # grpclib's keepalive closed the connection: a ping went unanswered.
    ping_unanswered = False
    goaway: GoAway | None = None
    lost_with: BaseException | None = None

    def __init__(
        self,
        base: H2Protocol,
        observer: ConnectionObserver,
        verify: Callable[[bytes], None] | None,
    ) -> None:
        super().__init__(*protocol_args(base))
        self._observer = observer
        self._verify = verify
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.established = True
        self.transport = transport
        refused = self._check_server(transport)
        super().connection_made(transport)
        if refused is not None:
            self.lost_with = refused
            cast(asyncio.Transport, transport).abort()
            return
        connection = self.connection
        close = connection.close

        def close_noting_why() -> None:
            # grpclib's keepalive calls this from its timer while the ping it waits
            # for is outstanding; a GOAWAY or a protocol error closes it too.
            if (
                not connection.is_closing()
                and self.goaway is None
                and connection._close_by_ping_handler is not None
            ):
                self.ping_unanswered = True
            close()

        connection.close = close_noting_why  # type: ignore[method-assign]
        processors = self.processor.processors
        terminated = cast(Callable[[ConnectionTerminated], None], processors[ConnectionTerminated])

        def on_goaway(event: ConnectionTerminated) -> None:
            self.goaway = GoAway(
                _error_code_name(event.error_code), bytes(event.additional_data or b"")
            )
            self._observer.goaway_received(self.goaway)
            terminated(event)

        processors[ConnectionTerminated] = on_goaway

    def _check_server(self, transport: asyncio.BaseTransport) -> TrionodesError | None:
        if self._verify is None:
            return None
        ssl_object = transport.get_extra_info("ssl_object")
        der = None if ssl_object is None else ssl_object.getpeercert(binary_form=True)
        if der is None:
            return TLSError("the server presented no certificate")
        try:
            self._verify(der)
        except TrionodesError as exc:
            return exc
        return None

    def data_received(self, data: bytes) -> None:
        self.received = True
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.lost_with is None:
            self.lost_with = exc
        super().connection_lost(exc)
        self._observer.protocol_lost(self)


def _error_code_name(code: int | None) -> str:
    try:
        return ErrorCodes(code or 0).name
    except ValueError:
        return f"error code {code}"


class TracedChannel(Channel):
    """A grpclib Channel that traces its connections; build it on the loop it uses.

    After a GOAWAY ``ENHANCE_YOUR_CALM`` with ``too_many_pings`` (the server limits
    how often it accepts pings), its next connections ping half as often, as gRPC's
    client keepalive design asks; ``on_slower_pings`` is told the new interval.

    Attributes:
        tls: Whether it speaks TLS.
        keepalive: Seconds between keepalive pings now; None for none.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl: ssl.SSLContext | None,
        codec: CodecBase,
        config: Configuration,
        verify: Callable[[bytes], None] | None = None,
        on_slower_pings: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(host, port, ssl=ssl, codec=codec, config=config)
        self.tls = ssl is not None
        self.keepalive: float | None = self._config._keepalive_time
        self._verify = verify
        self._on_slower_pings = on_slower_pings
        self._latest: TracedProtocol | None = None
        self._open: set[TracedProtocol] = set()
        self._all_lost: asyncio.Event = asyncio.Event()
        self._all_lost.set()

    def _protocol_factory(self) -> H2Protocol:
        # Called once per connection attempt, after the TCP connection is made.
        protocol = TracedProtocol(super()._protocol_factory(), self, self._verify)
        self._latest = protocol
        self._open.add(protocol)
        self._all_lost.clear()
        return protocol

    def goaway_received(self, goaway: GoAway) -> None:
        if not goaway.too_many_pings or self.keepalive is None:
            return
        self.keepalive *= 2
        self._config = dataclasses.replace(
            self._config,
            _keepalive_time=self.keepalive,
            _http2_min_sent_ping_interval_without_data=self.keepalive / 2,
        )
        if self._on_slower_pings is not None:
            self._on_slower_pings(self.keepalive)

    def protocol_lost(self, protocol: TracedProtocol) -> None:
        self._open.discard(protocol)
        if not self._open:
            self._all_lost.set()

    def trace(self) -> ConnectionTrace | None:
        """How the latest connection went; None before the first one."""
        latest = self._latest
        if latest is None:
            return None
        return ConnectionTrace(
            tls=self.tls,
            established=latest.established,
            received=latest.received,
            ping_unanswered=latest.ping_unanswered,
            goaway=latest.goaway,
            lost_with=latest.lost_with,
        )

    async def aclose(self) -> None:
        """Close, then wait until every connection is gone.

        Past :data:`CLOSE_TIMEOUT`, what is left is aborted: nothing outlives the
        channel.
        """
        self.close()
        try:
            await asyncio.wait_for(self._all_lost.wait(), CLOSE_TIMEOUT)
        except TimeoutError:
            for protocol in list(self._open):
                if isinstance(protocol.transport, asyncio.Transport):
                    protocol.transport.abort()


class HookedServer(grpclib.server.Server):
    """grpclib's server, building each accepted connection's protocol through ``wrap``.

    ``wrap`` gets grpclib's own protocol and returns the one to use, typically a
    subclass built with :func:`protocol_args` of it.
    """

    def __init__(
        self,
        handlers: Collection[IServable],
        *,
        codec: CodecBase,
        wrap: Callable[[H2Protocol], H2Protocol],
    ) -> None:
        super().__init__(handlers, codec=codec)
        self._wrap = wrap

    def _protocol_factory(self) -> H2Protocol:
        return self._wrap(super()._protocol_factory())


def protocol_args(base: H2Protocol) -> tuple[AbstractHandler, Configuration, H2Configuration]:
    """What to pass to ``H2Protocol.__init__`` to build another like ``base``."""
    return base.handler, base.config, base.h2_config


def on_ping_received(protocol: H2Protocol, callback: Callable[[], None]) -> None:
    """Call ``callback`` for each PING the peer sends (not its acks) on ``protocol``.

    Call it once the connection is made (grpclib builds its event table then). h2
    has answered the ping already when ``callback`` runs.
    """
    processors = protocol.processor.processors
    received = cast(Callable[[PingReceived], None], processors[PingReceived])

    def on_ping(event: PingReceived) -> None:
        received(event)
        callback()

    processors[PingReceived] = on_ping


def send_goaway(protocol: H2Protocol, error_code: int, debug: bytes) -> None:
    """Send GOAWAY with ``error_code`` and ``debug`` data on ``protocol``, then close it.

    The transport closes once the GOAWAY is written; calls still open on the
    connection are cut off. A connection already closing is left as it is.
    """
    connection = protocol.connection
    if connection.is_closing():
        return
    try:
        connection._connection.close_connection(error_code=error_code, additional_data=debug)
    except ProtocolError:
        pass  # h2 has already closed the connection: there is nothing left to say
    else:
        connection.flush()
    connection._transport.close()


# HTTP/2 frame types (RFC 9113 section 6) that mark a server as sending something.
_DATA_FRAME = 0
_HEADERS_FRAME = 1
_FRAME_HEADER_BYTES = 9


def carries_data_or_headers(data: bytes) -> bool:
    """Whether ``data``, one write of a grpclib connection, holds a DATA or HEADERS frame.

    grpclib writes what h2 prepared, which is always whole frames (a 3-byte length, a
    1-byte type, flags, stream id, then the payload), so a write can be read frame by
    frame from its start.
    """
    offset = 0
    while offset + _FRAME_HEADER_BYTES <= len(data):
        if data[offset + 3] in (_DATA_FRAME, _HEADERS_FRAME):
            return True
        offset += _FRAME_HEADER_BYTES + int.from_bytes(data[offset : offset + 3], "big")
    return False
