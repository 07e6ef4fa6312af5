"""The fake Curator: its simulated churn and its fault controls, seen from a client.

The controls are tested with bare Watch calls (``Curator._open_stream``), whose
streams do not reconnect, and with a bare HTTP/2 client where the connection
itself is under test (pings, settings).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import anyio
import h2.config
import h2.connection
import h2.events
import pytest
import trio
import trustme

import trionodes
from trionodes._core.wire import split_watch_event
from trionodes._transport import WATCH_PATH
from trionodes.testing import (
    FakeCurator,
    encode_watch_event,
    make_node,
    open_fake_curator,
    run_churn,
    server_ssl_context,
    settle,
)

from ..watch.test_cleanup import established_connections
from .calls import ALL_NODES, Receiver, one_node, receive_backlog


async def test_churn_joins_leaves_and_keeps_roles(autojump_clock: trio.abc.Clock) -> None:
    fake = FakeCurator()  # not serving: only its cluster is used
    founders = {make_node(i).id for i in range(1, 5)}
    fake.put(*(make_node(i, controller=True) for i in range(1, 5)))
    seen = set(fake.nodes)
    sizes = set()
    with trio.move_on_after(200):  # virtual seconds: 1,000 changes
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: run_churn(fake, changes_per_second=5, target_nodes=4, seed=3)
            )
            while True:
                await trio.sleep(0.2)
                seen |= set(fake.nodes)
                sizes.add(len(fake.nodes))
                for node_id in founders & set(fake.nodes):
                    roles = fake.nodes[node_id].roles
                    assert roles is not None
                    assert roles.kubernetes_controller is not None
    assert len(seen) > 20  # nodes kept joining
    assert founders - set(fake.nodes)  # and leaving
    assert max(sizes) <= 12  # hovering around the target


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds (things happen on the asyncio side too)."""
    with trio.fail_after(10):
        # Polled: the state changes on the asyncio side, which has no Trio event to set.
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.001)


# Calls.


async def test_send_raw_goes_to_the_calls_asked_for(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1), make_node(2))
    async with (
        curator._open_stream(ALL_NODES) as cluster,
        curator._open_stream(one_node(1)) as node_1,
        curator._open_stream(one_node(2)) as node_2,
    ):
        await receive_backlog(cluster)
        await node_1.receive()
        await node_2.receive()
        garbage = b"\xff\xff not a WatchEvent"
        duplicate = encode_watch_event([bytes(make_node(3))] * 2, [make_node(3).id])
        assert fake.send_raw(garbage) == 1
        assert fake.send_raw(duplicate, node_id=make_node(1).id) == 1
        assert fake.send_raw(garbage, node_id=make_node(9).id) == 0
        assert await cluster.receive() == garbage
        assert await node_1.receive() == duplicate
        fake.put(make_node(2, address="10.9.9.9"))
        # node 2's call got nothing raw: its next message is the change.
        assert [i for i, _ in split_watch_event(await node_2.receive()).nodes] == [make_node(2).id]
    assert set(fake.nodes) == {make_node(1).id, make_node(2).id}  # the cluster is untouched


async def test_send_raw_sends_a_message_over_the_usual_limit(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    node = bytes(make_node(1))
    oversize = encode_watch_event([node] * (5 * 2**20 // len(node)))  # gRPC's usual limit: 4 MiB
    async with curator._open_stream(ALL_NODES) as stream:
        await receive_backlog(stream)
        fake.send_raw(oversize)
        with pytest.raises(trionodes.ProtocolError, match=str(len(oversize))):
            await stream.receive()
    async with (
        trionodes.open_curator(fake.host, fake.port, max_message_bytes=len(oversize)) as curator,
        curator._open_stream(ALL_NODES) as stream,
    ):
        await receive_backlog(stream)
        fake.send_raw(oversize)
        assert await stream.receive() == oversize


async def test_stall_mid_backlog_until_resumed(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(*(make_node(i) for i in range(10)))  # a backlog of 4 events of 3 nodes
    fake.stall(after_messages=1)
    assert fake.stalled
    async with curator._open_stream(ALL_NODES) as stream, trio.open_nursery() as nursery:
        first = split_watch_event(await stream.receive())
        assert (len(first.nodes), first.last_backlogged) == (3, False)
        receiver = Receiver(stream)
        nursery.start_soon(receiver.run)
        fake.put(make_node(10))
        # A later call on the same connection gets its one message: the first
        # would have had its own by then.
        async with curator._open_stream(ALL_NODES) as later:
            await later.receive()
        assert (receiver.received, receiver.error) == ([], None)

        fake.resume()
        assert (fake.stalled, fake.frozen) == (False, False)
        await until(lambda: len(receiver.received) == 4)
        events = [split_watch_event(message) for message in receiver.received]
        assert [e.last_backlogged for e in events] == [False, False, True, False]
        assert {i for e in [first, *events[:3]] for i, _ in e.nodes} == {
            make_node(i).id for i in range(10)
        }
        assert [i for i, _ in events[3].nodes] == [make_node(10).id]
        nursery.cancel_scope.cancel()


async def test_stall_counts_an_ending_status_as_a_message(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    async with curator._open_stream(ALL_NODES) as stream:
        await receive_backlog(stream)
        fake.stall(after_messages=2)
        fake.put(make_node(1))
        fake.fail_streams(trionodes.StatusCode.UNAVAILABLE, "leader lost")
        fake.put(make_node(2))  # after the status: never sent
        await stream.receive()
        with pytest.raises(trionodes.CuratorError) as caught:
            await stream.receive()
        assert caught.value.status is trionodes.StatusCode.UNAVAILABLE


class H2Probe:
    """A bare HTTP/2 client on a non-blocking socket, to see the server's frames."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self._send()

    def close(self) -> None:
        self.sock.close()

    def _send(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def ping(self, payload: bytes) -> None:
        self.h2.ping(payload)
        self._send()

    def watch(self) -> int:
        """Start a NodesInCluster call; returns its stream id."""
        stream_id = self.h2.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", WATCH_PATH),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        body = bytes(ALL_NODES)
        self.h2.send_headers(stream_id, headers)
        self.h2.send_data(stream_id, b"\0" + len(body).to_bytes(4, "big") + body, end_stream=True)
        self._send()
        return stream_id

    def ready_events(self) -> list[h2.events.Event]:
        """What the server has sent so far, without waiting."""
        events: list[h2.events.Event] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return events
            assert data, "the server closed the connection"
            events += self.h2.receive_data(data)
            self._send()

    async def wait_for(self, kind: type[h2.events.Event]) -> list[h2.events.Event]:
        """Events up to and including the first of ``kind``."""
        events: list[h2.events.Event] = []
        while not any(isinstance(event, kind) for event in events):
            await trio.lowlevel.wait_readable(self.sock)
            events += self.ready_events()
        return events


async def test_a_stalled_call_keeps_its_connection_healthy(fake: FakeCurator) -> None:
    fake.stall()
    probe = H2Probe(fake.port)
    try:
        stream_id = probe.watch()
        await probe.wait_for(h2.events.RemoteSettingsChanged)
        probe.ping(b"stalled!")
        events = await probe.wait_for(h2.events.PingAckReceived)
        assert [e.ping_data for e in events if isinstance(e, h2.events.PingAckReceived)] == [
            b"stalled!"
        ]
        assert not [e for e in events if getattr(e, "stream_id", None) == stream_id]
        fake.resume()
        events = await probe.wait_for(h2.events.DataReceived)
        assert [e.stream_id for e in events if isinstance(e, h2.events.DataReceived)] == [stream_id]
    finally:
        probe.close()


# The network.


async def test_freeze_leaves_pings_unanswered_until_thawed(fake: FakeCurator) -> None:
    probe = H2Probe(fake.port)
    try:
        await probe.wait_for(h2.events.RemoteSettingsChanged)
        probe.ping(b"before!!")
        await probe.wait_for(h2.events.PingAckReceived)
        fake.freeze(new_connections=False)
        assert fake.frozen
        probe.ping(b"frozen!!")
        probe.watch()
        # The server answers a later connection, but did not read the first.
        later = H2Probe(fake.port)
        try:
            later.watch()
            await later.wait_for(h2.events.DataReceived)
        finally:
            later.close()
        assert probe.ready_events() == []
        assert fake.streams_opened == 1  # the later call alone
        assert fake.connections_accepted == 2
        fake.thaw()
        assert (fake.stalled, fake.frozen) == (False, False)
        events = await probe.wait_for(h2.events.PingAckReceived)
        assert [e.ping_data for e in events if isinstance(e, h2.events.PingAckReceived)] == [
            b"frozen!!"
        ]
        await probe.wait_for(h2.events.DataReceived)
        assert fake.streams_opened == 2
    finally:
        probe.close()


@pytest.mark.parametrize("new_connections", [True, False])
async def test_freeze_swallows_new_connections_if_asked(
    fake: FakeCurator, new_connections: bool
) -> None:
    fake.freeze(new_connections=new_connections)
    probe = H2Probe(fake.port)
    try:
        if new_connections:
            # The server sends its settings as it accepts a connection.
            await until(lambda: fake.connections_accepted == 1)
            assert probe.ready_events() == []
            fake.thaw()
        await probe.wait_for(h2.events.RemoteSettingsChanged)
        assert fake.connections_accepted == 1
    finally:
        probe.close()


async def test_freeze_holds_changes_back_and_thaw_delivers_them(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1))
    async with curator._open_stream(ALL_NODES) as stream, trio.open_nursery() as nursery:
        await receive_backlog(stream)
        fake.freeze(new_connections=False)
        receiver = Receiver(stream)
        nursery.start_soon(receiver.run)
        fake.put(make_node(2))
        # A client that connects now gets the change along with the backlog.
        async with (
            trionodes.open_curator(fake.host, fake.port) as other,
            other._open_stream(ALL_NODES) as later,
        ):
            assert len(await receive_backlog(later)) == 2
        assert (receiver.received, receiver.error) == ([], None)
        fake.thaw()
        await until(lambda: bool(receiver.received))
        assert [i for i, _ in split_watch_event(receiver.received[0]).nodes] == [make_node(2).id]
        assert fake.connections_accepted == 2
        nursery.cancel_scope.cancel()


async def test_drop_connections_loses_the_stream_but_keeps_listening(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1))
    async with curator._open_stream(ALL_NODES) as stream:
        await receive_backlog(stream)
        fake.drop_connections()
        with pytest.raises(trionodes.ConnectionLost):
            await stream.receive()
    async with curator._open_stream(ALL_NODES) as stream:
        assert await receive_backlog(stream) == [make_node(1).id]
    await fake.wait_idle()
    assert (fake.streams_dropped, fake.streams_cancelled) == (1, 1)
    assert fake.connections_accepted == 2


async def test_refused_connections_then_the_same_port_again(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1))
    port = fake.port
    async with curator._open_stream(ALL_NODES) as stream:
        await receive_backlog(stream)
        await fake.refuse_connections()
        assert (fake.listening, fake.port) == (False, port)
        with pytest.raises(trionodes.ConnectionLost):
            await stream.receive()
    assert fake.open_connections == 0
    async with curator._open_stream(ALL_NODES) as stream:
        with pytest.raises(trionodes.ConnectionLost) as caught:
            await stream.receive()
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)

    await fake.accept_connections()
    assert (fake.listening, fake.port) == (True, port)
    fake.put(make_node(2))
    async with curator._open_stream(ALL_NODES) as stream:
        assert sorted(await receive_backlog(stream)) == [make_node(1).id, make_node(2).id]
    assert fake.connections_accepted == 2


async def test_restart_drops_calls_and_serves_the_same_cluster_on_the_same_port(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1), make_node(2))
    port = fake.port
    async with (
        curator._open_stream(ALL_NODES) as cluster,
        curator._open_stream(one_node(1)) as node,
    ):
        await receive_backlog(cluster)
        await node.receive()
        fake.stall()  # a restart goes through stalls (and freezes) alike
        fake.freeze()
        await fake.restart()
        for stream in (cluster, node):
            with pytest.raises(trionodes.ConnectionLost):
                await stream.receive()
    fake.resume()
    fake.thaw()
    assert fake.port == port
    async with curator._open_stream(ALL_NODES) as cluster:
        assert sorted(await receive_backlog(cluster)) == [make_node(1).id, make_node(2).id]
    assert fake.streams_dropped == 2
    assert fake.connections_accepted == 2


@pytest.mark.parametrize("fault", ["stalled", "frozen"])
async def test_exit_ends_calls_and_closes_connections(fault: str) -> None:
    fake_cm = open_fake_curator()
    fake = await fake_cm.__aenter__()
    try:
        async with trionodes.open_curator(fake.host, fake.port) as curator:
            async with curator._open_stream(ALL_NODES) as stream:
                await receive_backlog(stream)
                fake.stall() if fault == "stalled" else fake.freeze()
                fake.put(make_node(1))
                await fake_cm.__aexit__(None, None, None)
                if fault == "stalled":
                    # What was queued, then the status.
                    event = split_watch_event(await stream.receive())
                    assert [i for i, _ in event.nodes] == [make_node(1).id]
                    with pytest.raises(trionodes.CuratorError) as caught:
                        await stream.receive()
                    assert caught.value.status is trionodes.StatusCode.UNAVAILABLE
                    assert fake.streams_dropped == 0
                else:
                    with pytest.raises(trionodes.ConnectionLost):
                        await stream.receive()
                    assert fake.streams_dropped == 1
            await settle()  # the server runs on a loop thread
            # The client still has its Curator open; the server closed its end.
            assert established_connections(fake.port) == 0
    except BaseException:
        await fake_cm.__aexit__(None, None, None)
        raise


async def test_network_controls_over_mutual_tls() -> None:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("owner")
    server_ctx = server_ssl_context(
        server.cert_chain_pems[0].bytes(),
        server.private_key_pem.bytes(),
        client_ca=ca.cert_pem.bytes(),
    )
    client_ctx = trionodes.client_ssl_context(
        ca.cert_pem.bytes(), client.cert_chain_pems[0].bytes(), client.private_key_pem.bytes()
    )
    async with open_fake_curator(ssl=server_ctx) as fake:
        fake.put(make_node(1))
        async with trionodes.open_curator(fake.host, fake.port, ssl=client_ctx) as curator:
            async with curator._open_stream(ALL_NODES) as stream, trio.open_nursery() as nursery:
                await receive_backlog(stream)
                fake.freeze()
                receiver = Receiver(stream)
                nursery.start_soon(receiver.run)
                fake.put(make_node(2))
                fake.thaw()
                await until(lambda: bool(receiver.received))
                await fake.restart()
                await until(lambda: receiver.error is not None)
                assert isinstance(receiver.error, trionodes.ConnectionLost)
            async with curator._open_stream(ALL_NODES) as stream:
                assert len(await receive_backlog(stream)) == 2
        assert (fake.connections_accepted, fake.streams_dropped) == (2, 1)


async def test_controls_need_a_serving_fake() -> None:
    fake = FakeCurator()
    with pytest.raises(RuntimeError, match="not serving"):
        fake.freeze()
    with pytest.raises(RuntimeError, match="not serving"):
        await fake.restart()


async def _faults_in_turn() -> list[str]:
    """Each control once, through the bare transport, with anyio only."""
    log: list[str] = []
    async with open_fake_curator() as fake:
        fake.put(make_node(1))
        async with trionodes.open_curator(fake.host, fake.port) as curator:
            async with curator._open_stream(ALL_NODES) as stream:
                log.append(f"backlog {len(await receive_backlog(stream))}")
                fake.stall()
                fake.freeze()
                fake.put(make_node(2))
                fake.thaw()
                fake.resume()
                log.append(f"nodes {len(split_watch_event(await stream.receive()).nodes)}")
                fake.send_raw(b"raw")
                log.append((await stream.receive()).decode())
                await fake.restart()
                try:
                    await stream.receive()
                except trionodes.ConnectionLost:
                    log.append("lost")
            await fake.refuse_connections()
            async with curator._open_stream(ALL_NODES) as stream:
                try:
                    await stream.receive()
                except trionodes.ConnectionLost as exc:
                    log.append(type(exc.__cause__).__name__)
            await fake.accept_connections()
            async with curator._open_stream(ALL_NODES) as stream:
                log.append(f"backlog {len(await receive_backlog(stream))}")
        with anyio.fail_after(5):
            await fake.wait_idle()
        log.append(f"accepted {fake.connections_accepted} dropped {fake.streams_dropped}")
    return log


FAULTS_IN_TURN = [
    "backlog 1",
    "nodes 1",
    "raw",
    "lost",
    "ConnectionRefusedError",
    "backlog 2",
    "accepted 2 dropped 1",
]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_controls_on_anyio(backend: str) -> None:
    assert anyio.run(_faults_in_turn, backend=backend) == FAULTS_IN_TURN


def test_controls_on_plain_asyncio() -> None:
    assert asyncio.run(_faults_in_turn()) == FAULTS_IN_TURN
