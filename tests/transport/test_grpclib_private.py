"""The grpclib private parts trionodes relies on, checked against the installed grpclib.

trionodes/_transport/grpclib_private.py reaches into grpclib where it has no public
hook. Each test here names the private part it checks, so that a grpclib upgrade
that changes one fails here with a message saying what changed, instead of quietly
breaking connection tracing, keepalive or the test server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import grpclib.client
import grpclib.config
import grpclib.const
import grpclib.exceptions
import grpclib.protocol
import grpclib.server
import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest

from trionodes._errors import ConnectionLost, CuratorError, StatusCode
from trionodes._transport.codec import WATCH_PATH, RawCodec, RawMessage
from trionodes._transport.errors import ConnectionTrace, GoAway, map_error
from trionodes._transport.grpclib_private import (
    HookedServer,
    TracedChannel,
    TracedProtocol,
    carries_data_or_headers,
    configuration,
    protocol_args,
)

T = TypeVar("T")

# Far longer than anything here takes; a hang fails instead of blocking the run.
TIMEOUT = 10.0

GRPCLIB = f"grpclib {grpclib.__version__}"


class ChannelStub:
    """What TracedProtocol tells its channel, recorded."""

    def __init__(self, lost: list[TracedProtocol] | None = None) -> None:
        self.lost = [] if lost is None else lost
        self.goaways: list[GoAway] = []

    def protocol_lost(self, protocol: TracedProtocol) -> None:
        self.lost.append(protocol)

    def goaway_received(self, goaway: GoAway) -> None:
        self.goaways.append(goaway)


def run(coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro(), TIMEOUT)

    return asyncio.run(bounded())


def parameters(function: Callable[..., object]) -> list[str]:
    return list(inspect.signature(function).parameters)


# The factories trionodes overrides.


@pytest.mark.parametrize(
    "cls", [grpclib.client.Channel, grpclib.server.Server], ids=["Channel", "Server"]
)
def test_protocol_factory_exists_and_takes_only_self(cls: type) -> None:
    name = f"{cls.__module__}.{cls.__qualname__}._protocol_factory"
    factory = getattr(cls, "_protocol_factory", None)
    assert callable(factory), f"{GRPCLIB}: {name} is gone (TracedChannel/HookedServer override it)"
    assert parameters(factory) == ["self"], (
        f"{GRPCLIB}: {name} now takes {parameters(factory)}, trionodes overrides it as "
        f"taking only self"
    )


def test_channel_connects_through_protocol_factory() -> None:
    # TracedChannel only sees connections if grpclib builds them via the factory.
    source = inspect.getsource(grpclib.client.Channel._create_connection)
    assert "self._protocol_factory" in source, (
        f"{GRPCLIB}: Channel._create_connection no longer uses self._protocol_factory"
    )


def test_server_listens_through_protocol_factory() -> None:
    source = inspect.getsource(grpclib.server.Server.start)
    assert "self._protocol_factory" in source, (
        f"{GRPCLIB}: Server.start no longer uses self._protocol_factory"
    )


# H2Protocol's constructor and attributes.


def test_h2protocol_constructor_parameters() -> None:
    params = parameters(grpclib.protocol.H2Protocol.__init__)
    assert params == ["self", "handler", "config", "h2_config"], (
        f"{GRPCLIB}: H2Protocol.__init__ now takes {params}; protocol_args() and "
        f"TracedProtocol build it as H2Protocol(handler, config, h2_config)"
    )


def test_h2protocol_keeps_its_arguments_as_attributes() -> None:
    handler = grpclib.client.Handler()
    config = configuration(None, 20.0, 10.0)
    h2_config = h2.config.H2Configuration(client_side=True, header_encoding="ascii")
    protocol = grpclib.protocol.H2Protocol(handler, config, h2_config)
    for name, value in (("handler", handler), ("config", config), ("h2_config", h2_config)):
        assert getattr(protocol, name, None) is value, (
            f"{GRPCLIB}: H2Protocol no longer keeps its {name} argument as .{name} "
            f"(protocol_args reads it)"
        )
    assert protocol_args(protocol) == (handler, config, h2_config)


def test_protocol_args_rebuild_the_channels_protocol() -> None:
    async def main() -> None:
        channel = grpclib.client.Channel("127.0.0.1", 1, codec=RawCodec())
        try:
            base = channel._protocol_factory()
            assert isinstance(base, grpclib.protocol.H2Protocol), (
                f"{GRPCLIB}: Channel._protocol_factory returned {type(base)}"
            )
            traced = TracedProtocol(base, ChannelStub(), None)
            assert protocol_args(traced) == protocol_args(base)
            assert traced.config is channel._config
        finally:
            channel.close()

    run(main)


# Configuration's private keepalive fields.

KEEPALIVE_FIELDS = (
    "_keepalive_time",
    "_keepalive_timeout",
    "_http2_max_pings_without_data",
    "_http2_min_sent_ping_interval_without_data",
)


@pytest.mark.parametrize("field", KEEPALIVE_FIELDS)
def test_configuration_has_keepalive_field(field: str) -> None:
    names = {f.name for f in dataclasses.fields(grpclib.config.Configuration)}
    assert field in names, (
        f"{GRPCLIB}: Configuration has no field {field} (configuration() sets it)"
    )


def test_configuration_with_keepalive() -> None:
    config = configuration("curator.example", 20.0, 10.0)
    assert config.ssl_target_name_override == "curator.example"
    assert config._keepalive_time == 20.0
    assert config._keepalive_timeout == 10.0
    assert config._http2_max_pings_without_data == 0
    assert config._http2_min_sent_ping_interval_without_data == 10.0


def test_configuration_without_keepalive() -> None:
    config = configuration(None, None, 10.0)
    assert config.ssl_target_name_override is None
    # Left at grpclib's default, which a Channel resolves to no pings for a client.
    default = grpclib.config.Configuration()._keepalive_time
    assert config._keepalive_time is default

    async def main() -> None:
        channel = grpclib.client.Channel("127.0.0.1", 1, codec=RawCodec(), config=config)
        try:
            assert channel._config._keepalive_time is None, (
                f"{GRPCLIB}: a client Channel pings by default now"
            )
        finally:
            channel.close()

    run(main)


@pytest.mark.parametrize(
    ("keepalive", "timeout"), [(0.0, 10.0), (-1.0, 10.0), (20.0, 0.0), (20.0, -5.0)]
)
def test_configuration_refuses_bad_keepalive(keepalive: float, timeout: float) -> None:
    # configuration() documents TypeError/ValueError for settings grpclib refuses.
    with pytest.raises((TypeError, ValueError)):
        configuration(None, keepalive, timeout)


def test_connection_reads_the_keepalive_fields() -> None:
    # The fields exist, but do they still drive the pings?
    source = inspect.getsource(grpclib.protocol.Connection)
    for field in KEEPALIVE_FIELDS:
        assert f"_config.{field}" in source, (
            f"{GRPCLIB}: grpclib.protocol.Connection no longer reads Configuration.{field}"
        )


# The protocol's connection: close and is_closing, as TracedProtocol wraps them.


@pytest.mark.parametrize("method", ["close", "is_closing"])
def test_connection_class_has_method(method: str) -> None:
    assert callable(getattr(grpclib.protocol.Connection, method, None)), (
        f"{GRPCLIB}: grpclib.protocol.Connection.{method} is gone (TracedProtocol wraps it)"
    )


class FakeTransport(asyncio.Transport):
    """Just enough of a transport for grpclib's H2Protocol.connection_made."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True


def server_preface() -> bytes:
    """What an HTTP/2 server sends first (its SETTINGS)."""
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    return server.data_to_send()


def test_traced_protocol_over_a_fake_transport() -> None:
    lost: list[TracedProtocol] = []

    async def main() -> None:
        channel = grpclib.client.Channel(
            "127.0.0.1", 1, codec=RawCodec(), config=configuration(None, 20.0, 10.0)
        )
        try:
            protocol = TracedProtocol(channel._protocol_factory(), ChannelStub(lost), None)
            assert (protocol.established, protocol.received) == (False, False)
            transport = FakeTransport()
            protocol.connection_made(transport)
            assert protocol.established
            assert protocol.transport is transport
            assert transport.written, "the client sent no HTTP/2 preface"
            connection = protocol.connection
            assert isinstance(connection, grpclib.protocol.Connection), (
                f"{GRPCLIB}: H2Protocol.connection is a {type(connection)} after connection_made"
            )
            assert connection.is_closing() is False
            protocol.data_received(server_preface())
            assert protocol.received
            # A close while a keepalive ping is outstanding is the keepalive's.
            connection._close_by_ping_handler = asyncio.get_running_loop().call_later(
                60, lambda: None
            )
            connection.close()
            assert transport.closing
            assert protocol.ping_unanswered
            reset = ConnectionResetError("reset")
            protocol.connection_lost(reset)
            assert protocol.lost_with is reset
            assert lost == [protocol]
        finally:
            channel.close()

    run(main)


def test_close_after_the_transport_closes_is_not_the_clients() -> None:
    async def main() -> None:
        channel = grpclib.client.Channel("127.0.0.1", 1, codec=RawCodec())
        try:
            protocol = TracedProtocol(channel._protocol_factory(), ChannelStub(), None)
            transport = FakeTransport()
            protocol.connection_made(transport)
            transport.closing = True
            assert protocol.connection.is_closing(), (
                f"{GRPCLIB}: Connection.is_closing no longer follows the transport"
            )
            protocol.connection.close()
            assert not protocol.ping_unanswered
            protocol.connection_lost(None)
            assert protocol.lost_with is None
        finally:
            channel.close()

    run(main)


def test_keepalive_close_goes_through_the_wrapped_close() -> None:
    # grpclib's keepalive closes a dead connection with self.close of its Connection,
    # looked up when the ping times out: the instance attribute TracedProtocol sets.
    source = inspect.getsource(grpclib.protocol.Connection._ping)
    assert "self.close" in source, (
        f"{GRPCLIB}: Connection._ping no longer closes through self.close; "
        f"TracedProtocol.ping_unanswered would miss keepalive closures"
    )


# HookedServer.


def test_hooked_server_builds_protocols_through_wrap() -> None:
    wrapped: list[grpclib.protocol.H2Protocol] = []
    result = grpclib.protocol.H2Protocol(
        grpclib.client.Handler(), configuration(None, None, 1.0), h2.config.H2Configuration()
    )

    def wrap(base: grpclib.protocol.H2Protocol) -> grpclib.protocol.H2Protocol:
        wrapped.append(base)
        return result

    async def main() -> None:
        server = HookedServer([], codec=RawCodec(), wrap=wrap)
        assert server._protocol_factory() is result
        assert len(wrapped) == 1
        assert type(wrapped[0]) is grpclib.protocol.H2Protocol
        handler, config, h2_config = protocol_args(wrapped[0])
        assert isinstance(handler, grpclib.protocol.AbstractHandler)
        assert isinstance(config, grpclib.config.Configuration)
        assert h2_config.client_side is False

    run(main)


@contextlib.asynccontextmanager
async def serving(
    wrap: Callable[[grpclib.protocol.H2Protocol], grpclib.protocol.H2Protocol],
) -> AsyncIterator[int]:
    server = HookedServer([], codec=RawCodec(), wrap=wrap)
    await server.start("127.0.0.1", 0)
    try:
        assert isinstance(server._server, asyncio.Server)
        yield server._server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def watch_once(channel: grpclib.client.Channel) -> None:
    """Start a Watch call and wait for its first reply."""
    async with channel.request(
        WATCH_PATH, grpclib.const.Cardinality.UNARY_STREAM, bytes, RawMessage
    ) as stream:
        await stream.send_message(b"", end=True)
        await stream.recv_message()


def test_hooked_server_and_traced_channel_over_a_socket() -> None:
    wrapped: list[grpclib.protocol.H2Protocol] = []

    def wrap(base: grpclib.protocol.H2Protocol) -> grpclib.protocol.H2Protocol:
        wrapped.append(base)
        return base

    async def main() -> ConnectionTrace | None:
        async with serving(wrap) as port:
            channel = TracedChannel(
                "127.0.0.1", port, ssl=None, codec=RawCodec(), config=configuration(None, None, 1.0)
            )
            assert channel.trace() is None
            try:
                # No service: the server ends the call with an error status (grpclib
                # 0.4.9 sends UNIMPLEMENTED as trailers-only, which its client reads
                # as UNKNOWN), over a wrapped protocol.
                with pytest.raises(grpclib.exceptions.GRPCError) as info:
                    await watch_once(channel)
                mapped = map_error(info.value, "here", tls=False, trace=channel.trace())
                assert type(mapped) is CuratorError
                assert mapped.status is not StatusCode.OK
                return channel.trace()
            finally:
                await channel.aclose()

    trace = run(main)
    assert len(wrapped) == 1, "HookedServer did not build the accepted connection through wrap"
    assert trace == ConnectionTrace(
        tls=False,
        established=True,
        received=True,
        ping_unanswered=False,
        goaway=None,
        lost_with=None,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("tls", [False, True])
def test_traced_channel_to_a_closed_port(tls: bool) -> None:
    port = closed_port()

    async def main() -> None:
        ctx = ssl.create_default_context() if tls else None
        channel = TracedChannel(
            "127.0.0.1", port, ssl=ctx, codec=RawCodec(), config=configuration(None, None, 1.0)
        )
        try:
            with pytest.raises(ConnectionRefusedError) as info:
                await watch_once(channel)
            # No TCP connection, so no protocol was built.
            assert channel.trace() is None
            mapped = map_error(info.value, f"127.0.0.1:{port}", tls=tls, trace=channel.trace())
            assert isinstance(mapped, ConnectionLost)
            assert not mapped.maybe_tls
            assert f"127.0.0.1:{port}" in str(mapped)
        finally:
            await channel.aclose()

    run(main)


@contextlib.asynccontextmanager
async def raw_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]],
) -> AsyncIterator[int]:
    writers: list[asyncio.StreamWriter] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await handle(reader, writer)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


def test_keepalive_closes_a_silent_connection_as_the_clients() -> None:
    # A server that reads everything and never answers, not even a ping: grpclib's
    # keepalive (the private Configuration fields) must close the connection through
    # the wrapped Connection.close, and the trace must say so.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass

    async def main() -> tuple[BaseException, ConnectionTrace | None]:
        async with raw_server(silent) as port:
            channel = TracedChannel(
                "127.0.0.1", port, ssl=None, codec=RawCodec(), config=configuration(None, 0.1, 0.2)
            )
            try:
                with pytest.raises(grpclib.exceptions.StreamTerminatedError) as info:
                    await watch_once(channel)
                return info.value, channel.trace()
            finally:
                await channel.aclose()

    exc, trace = run(main)
    assert trace is not None
    assert trace.ping_unanswered, f"{GRPCLIB}: keepalive did not close the connection: {trace}"
    assert not trace.received
    mapped = map_error(exc, "here", tls=False, trace=trace)
    assert isinstance(mapped, ConnectionLost)
    assert not mapped.maybe_tls
    assert "keepalive" in str(mapped)


def test_plain_text_connection_closed_at_once_is_likely_tls() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def main() -> tuple[BaseException, ConnectionTrace | None]:
        async with raw_server(hang_up) as port:
            channel = TracedChannel(
                "127.0.0.1", port, ssl=None, codec=RawCodec(), config=configuration(None, None, 1.0)
            )
            try:
                with pytest.raises(grpclib.exceptions.StreamTerminatedError) as info:
                    await watch_once(channel)
                return info.value, channel.trace()
            finally:
                await channel.aclose()

    exc, trace = run(main)
    assert trace is not None
    assert trace.established
    assert not trace.received
    assert not trace.ping_unanswered
    mapped = map_error(exc, "here", tls=False, trace=trace)
    assert isinstance(mapped, ConnectionLost)
    assert mapped.maybe_tls


def test_goaway_too_many_pings_halves_how_often_the_channel_pings() -> None:
    # A server at gRPC's default ping policy: it answers the first ping with GOAWAY
    # ENHANCE_YOUR_CALM "too_many_pings" and closes, as grpc-go and the C core do.
    async def strict(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, validate_inbound_headers=False)
        )
        connection.initiate_connection()
        writer.write(connection.data_to_send())
        while data := await reader.read(65536):
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.PingReceived):
                    connection.close_connection(
                        h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, b"too_many_pings"
                    )
                    writer.write(connection.data_to_send())
                    writer.close()
                    return
            writer.write(connection.data_to_send())

    intervals: list[float] = []

    async def main() -> tuple[BaseException, ConnectionTrace | None, float | None]:
        async with raw_server(strict) as port:
            channel = TracedChannel(
                "127.0.0.1",
                port,
                ssl=None,
                codec=RawCodec(),
                config=configuration(None, 0.1, 5.0),
                on_slower_pings=intervals.append,
            )
            try:
                with pytest.raises(grpclib.exceptions.StreamTerminatedError) as info:
                    await watch_once(channel)
                return info.value, channel.trace(), channel.keepalive
            finally:
                await channel.aclose()

    exc, trace, keepalive = run(main)
    assert trace is not None
    assert trace.goaway == GoAway("ENHANCE_YOUR_CALM", b"too_many_pings")
    assert not trace.ping_unanswered, "a GOAWAY was taken for an unanswered ping"
    assert keepalive == 0.2
    assert intervals == [0.2]
    mapped = map_error(exc, "here", tls=False, trace=trace)
    assert "GOAWAY ENHANCE_YOUR_CALM (too_many_pings)" in str(mapped)


# The parts the test servers use (behaviour: tests/transport/test_server.py).


def test_the_protocol_dispatches_pings_through_its_event_table() -> None:
    source = inspect.getsource(grpclib.protocol.EventsProcessor.__init__)
    assert "PingReceived: self.process_ping_received" in source, (
        f"{GRPCLIB}: EventsProcessor.processors no longer maps PingReceived; "
        f"on_ping_received would see no ping"
    )


def test_the_connection_keeps_h2s_connection_and_the_transport() -> None:
    source = inspect.getsource(grpclib.protocol.Connection.__init__)
    for name in ("self._connection", "self._transport"):
        assert name in source, f"{GRPCLIB}: Connection no longer sets {name}; send_goaway breaks"


def test_h2_frames_are_read_from_their_headers() -> None:
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    assert not carries_data_or_headers(server.data_to_send())  # SETTINGS
    server.ping(b"12345678")
    assert not carries_data_or_headers(server.data_to_send())
    client = h2.connection.H2Connection()
    client.initiate_connection()
    client.send_headers(
        1, [(":method", "POST"), (":path", "/"), (":scheme", "http"), (":authority", "a")]
    )
    # The client's 24-byte preface is no frame; the frames after it are read in turn.
    assert carries_data_or_headers(client.data_to_send()[24:])
