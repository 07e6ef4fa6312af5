"""The fakes' gRPC server: the ping policy's rule, frame spotting, methods and peers."""

from __future__ import annotations

import h2.config
import h2.connection
import pytest
import trio

import trionodes
from trionodes._core.wire import encode_watch_event
from trionodes._errors import CuratorError, StatusCode
from trionodes._proto.metropolis.node.core.curator.proto.api import WatchRequest
from trionodes._transport.codec import WATCH_PATH
from trionodes._transport.grpclib_private import carries_data_or_headers
from trionodes._transport.server import (
    CURATOR_PING_POLICY,
    GRPC_DEFAULT_PING_POLICY,
    Peer,
    PingPolicy,
    PingStrikes,
    StreamingMethod,
    WatchSession,
    serve_grpc,
)

from ..testing.calls import ALL_NODES

POLICY = PingPolicy(min_interval=1.0, max_strikes=2)


def test_the_first_ping_and_pings_far_enough_apart_are_never_strikes() -> None:
    strikes = PingStrikes(POLICY)
    assert not any(strikes.ping_received(float(t)) for t in range(100))


def test_more_strikes_than_allowed_cut_the_connection_off() -> None:
    strikes = PingStrikes(POLICY)
    # First ping; then two strikes pass; the third is one too many.
    assert [strikes.ping_received(t * 0.1) for t in range(4)] == [False, False, False, True]


def test_data_or_headers_sent_clear_the_strikes() -> None:
    strikes = PingStrikes(POLICY)
    for t in range(3):
        assert not strikes.ping_received(t * 0.1)
    strikes.frames_sent()
    # The ping after the frames is not judged; the count starts over.
    assert [strikes.ping_received(0.3 + t * 0.1) for t in range(4)] == [
        False,
        False,
        False,
        True,
    ]


def test_the_ready_made_policies() -> None:
    assert (CURATOR_PING_POLICY.min_interval, CURATOR_PING_POLICY.max_strikes) == (1.0, 2)
    assert (GRPC_DEFAULT_PING_POLICY.min_interval, GRPC_DEFAULT_PING_POLICY.max_strikes) == (300, 2)
    # A client pinging every 20 s on a quiet stream: cut off at its fourth ping (80 s).
    strikes = PingStrikes(GRPC_DEFAULT_PING_POLICY)
    assert [strikes.ping_received(20.0 * n) for n in range(1, 5)] == [False, False, False, True]


def server_writes() -> tuple[h2.connection.H2Connection, h2.connection.H2Connection]:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    return client, server


def test_frames_are_read_from_each_write() -> None:
    client, server = server_writes()
    client.send_headers(
        1, [(":method", "POST"), (":path", "/x"), (":scheme", "http"), (":authority", "a")]
    )
    client.ping(b"12345678")
    server.receive_data(client.data_to_send())
    # A settings ack and a ping ack: nothing a client's ping rule counts.
    control = server.data_to_send()
    assert control
    assert not carries_data_or_headers(control)
    server.send_headers(1, [(":status", "200")])
    assert carries_data_or_headers(server.data_to_send())
    # DATA behind another frame in the same write is found too.
    server.ping(b"abcdefgh")
    server.send_data(1, b"payload")
    assert carries_data_or_headers(server.data_to_send())


class OneMessage:
    """Serves one message, then ends the call; or refuses every call."""

    def __init__(self, refuse: CuratorError | None = None) -> None:
        self.peers: list[Peer] = []
        self._refuse = refuse

    def open_session(self, request: WatchRequest, peer: Peer) -> WatchSession:
        self.peers.append(peer)
        if self._refuse is not None:
            raise self._refuse
        return Ended([encode_watch_event([], [], last_backlogged=True)])


class Ended:
    """A session that sends what it was given and then ends with OK."""

    def __init__(self, messages: list[bytes]) -> None:
        self._items: list[bytes | CuratorError] = [*messages, CuratorError(StatusCode.OK, "")]

    def take(self) -> list[bytes | CuratorError]:
        items, self._items = self._items, []
        return items

    def set_waker(self, waker: object) -> None:
        pass

    def close(self, cancelled: bool) -> None:
        pass


async def test_methods_are_served_with_the_peer_and_changes_take_effect_on_restart() -> None:
    serving = OneMessage()
    refusing = OneMessage(CuratorError(StatusCode.PERMISSION_DENIED, "no"))
    async with (
        serve_grpc({WATCH_PATH: StreamingMethod(WatchRequest, serving)}) as server,
        trionodes.open_curator(server.host, server.port) as curator,
    ):
        server.methods = {WATCH_PATH: StreamingMethod(WatchRequest, refusing)}
        async with curator._open_stream(ALL_NODES) as stream:
            with trio.fail_after(10):
                await stream.receive()
        assert serving.peers == [Peer(None, None, 0)]
        await server.restart()
        async with curator._open_stream(ALL_NODES) as stream:
            with trio.fail_after(10), pytest.raises(trionodes.CuratorError) as caught:
                await stream.receive()
        assert caught.value.status is StatusCode.PERMISSION_DENIED
        assert caught.value.details == "no"
        assert len(serving.peers) == len(refusing.peers) == 1
