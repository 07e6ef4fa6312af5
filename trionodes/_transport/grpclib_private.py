"""Every use of grpclib's private parts, in one place.

grpclib offers no public hook for what trionodes needs: seeing how a connection went
(to explain failures grpclib reports only as "connection lost"), keepalive settings,
and a server whose connections can be frozen or dropped. These are reached through
``Channel._protocol_factory``, ``Server._protocol_factory``, the protocol's
``handler``/``config``/``h2_config`` attributes, its ``connection.close`` and the
``_keepalive_*`` fields of ``Configuration``. ``tests/transport/test_grpclib_private.py``
checks each one against the installed grpclib, so an upgrade that changes them fails
loudly there instead of quietly here.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Collection

import grpclib.server
from grpclib._typing import IServable
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.encoding.base import CodecBase
from grpclib.protocol import AbstractHandler, H2Protocol
from h2.config import H2Configuration

from .errors import ConnectionTrace

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


class TracedProtocol(H2Protocol):
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

    def __init__(self, base: H2Protocol, on_lost: Callable[[TracedProtocol], None]) -> None:
        super().__init__(*protocol_args(base))
        self._on_lost = on_lost
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.established = True
        self.transport = transport
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
        self._on_lost(self)


class TracedChannel(Channel):
    """A grpclib Channel that traces its connections; build it on the loop it uses.

    Attributes:
        tls: Whether it speaks TLS.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl: ssl.SSLContext | None,
        codec: CodecBase,
        config: Configuration,
    ) -> None:
        super().__init__(host, port, ssl=ssl, codec=codec, config=config)
        self.tls = ssl is not None
        self._latest: TracedProtocol | None = None
        self._open: set[TracedProtocol] = set()
        self._all_lost: asyncio.Event = asyncio.Event()
        self._all_lost.set()

    def _protocol_factory(self) -> H2Protocol:
        # Called once per connection attempt, after the TCP connection is made.
        protocol = TracedProtocol(super()._protocol_factory(), self._lost)
        self._latest = protocol
        self._open.add(protocol)
        self._all_lost.clear()
        return protocol

    def _lost(self, protocol: TracedProtocol) -> None:
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
            closed_by_client=latest.closed_by_client,
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
