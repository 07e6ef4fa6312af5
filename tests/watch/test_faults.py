"""Faults and hostile input from a real server: each has a defined outcome.

Whatever the server does, a follower's view is never half-applied, and once the
server behaves again it equals the cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import anyio
import pytest
import trio
import trio.testing

import trionodes
from trionodes import BatchKind, CuratorError, Node, NodeState, StatusCode
from trionodes._core.wire import encode_watch_event
from trionodes._transport import serve_watch
from trionodes.testing import FakeCurator, make_node, open_fake_curator, settle

from .recorder import Recorder

FAST = trionodes.RetryPolicy(initial_delay=0.01, max_delay=0.02)
TIMEOUT = 10


def nid(index: int) -> str:
    return make_node(index).id


async def until(condition: Callable[[], bool]) -> None:
    """Wait (in real time: the streams are real) until ``condition`` holds."""
    with anyio.fail_after(TIMEOUT):
        # Polled: the conditions span the client, the server and the time between.
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.005)


class Watched:
    """A watch with one recording follower, on a fake with nodes 1 to 3."""

    def __init__(
        self, fake: FakeCurator, watch: trionodes.ClusterWatch, recorder: Recorder
    ) -> None:
        self.fake = fake
        self.watch = watch
        self.recorder = recorder

    async def settle(self) -> None:
        await settle()

    async def reconnected(self, times: int = 1) -> None:
        """Wait until the watch has reconnected ``times`` times and synced again."""
        await until(lambda: self.watch.stats.reconnects >= times and self.watch.stats.synced)
        await self.settle()

    def matches_cluster(self) -> bool:
        return self.recorder.view == dict(self.fake.nodes) == dict(self.watch.nodes)


@pytest.fixture
async def watched(fake: FakeCurator, curator: trionodes.Curator) -> AsyncIterator[Watched]:
    fake.put(*(make_node(i) for i in range(1, 4)))
    recorder = Recorder()
    async with (
        trionodes.open_node_watch(curator, retry=FAST) as watch,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(watch.follow, recorder)
        recorder.take()
        yield Watched(fake, watch, recorder)
        nursery.cancel_scope.cancel()


def event(*nodes: Node, tombstones: tuple[str, ...] = (), last: bool = False) -> bytes:
    return encode_watch_event([bytes(n) for n in nodes], tombstones, last_backlogged=last)


def nameless(index: int) -> Node:
    node = make_node(index)
    node.id = ""
    return node


# Input that breaks the wire contract: the message is rejected whole and the watch
# resyncs. A change in the same message as the bad part is not applied.
REJECTED = {
    "undecodable bytes": b"\xff\xff\xff",
    "undecodable node": event(make_node(4)) + b"\x0a\x05\x0a\x01a\x1a\xff",
    "node without id": event(make_node(4), nameless(5)),
    "tombstone without id": event(make_node(4), tombstones=("",)),
}


@pytest.mark.parametrize("data", REJECTED.values(), ids=REJECTED.keys())
async def test_contract_breaking_input_is_rejected_whole_and_resynced(
    watched: Watched, data: bytes
) -> None:
    assert watched.fake.send_raw(data) == 1
    await watched.reconnected()
    assert isinstance(watched.watch.stats.last_error, trionodes.ProtocolError)
    # Node 4 came in the rejected message only: the follower never saw it.
    assert watched.recorder.take() == []
    assert watched.matches_cluster()


async def test_message_over_the_size_limit_is_rejected(fake: FakeCurator) -> None:
    fake.put(make_node(1))
    async with (
        trionodes.open_curator(fake.host, fake.port, max_message_bytes=50_000) as curator,
        trionodes.open_node_watch(curator, retry=FAST) as watch,
    ):
        await watch.wait_synced()
        big = event(*(make_node(i) for i in range(2, 400)))
        assert len(big) > 50_000
        fake.send_raw(big)
        await until(lambda: watch.stats.reconnects == 1 and watch.stats.synced)
        error = watch.stats.last_error
        assert isinstance(error, trionodes.ProtocolError)
        assert f"sent a message of {len(big)} bytes, over the limit of 50000" in str(error)
        assert list(watch.nodes) == [nid(1)]


async def test_default_size_limit_is_grpcs_4_mib(watched: Watched) -> None:
    copies = 4 * 1024 * 1024 // len(bytes(make_node(4))) + 1
    watched.fake.send_raw(encode_watch_event([bytes(make_node(4))] * copies, ()))
    await watched.reconnected()
    assert "over the limit of 4194304" in str(watched.watch.stats.last_error)
    assert watched.matches_cluster()


async def test_duplicate_ids_in_one_event_the_last_wins(watched: Watched) -> None:
    watched.fake.send_raw(
        event(make_node(1, state=NodeState.NEW), make_node(1, state=NodeState.STANDBY))
    )
    await watched.settle()
    assert watched.recorder.take() == [("updated", nid(1)), ("done",)]
    assert watched.recorder.view[nid(1)].state is NodeState.STANDBY


async def test_a_node_and_its_tombstone_in_one_event_is_a_deletion(watched: Watched) -> None:
    watched.fake.send_raw(
        event(make_node(2, state=NodeState.NEW), make_node(7), tombstones=(nid(2), nid(7)))
    )
    await watched.settle()
    # Node 7 came and went within the event: nothing to tell.
    assert watched.recorder.take() == [("deleted", nid(2)), ("done",)]


async def test_tombstones_for_unknown_nodes_are_ignored(watched: Watched) -> None:
    watched.fake.send_raw(event(tombstones=(nid(8), "no-such-node")))
    await watched.settle()
    assert watched.recorder.take() == []
    assert watched.watch.stats.reconnects == 0


async def test_a_second_last_backlogged_is_a_live_event(watched: Watched) -> None:
    watched.fake.send_raw(event(make_node(5), last=True))
    await watched.settle()
    assert watched.recorder.take() == [("new", nid(5)), ("done",)]
    assert watched.recorder.kinds[-1] is BatchKind.LIVE
    assert watched.watch.stats.reconnects == 0


async def test_a_server_that_stalls_mid_backlog_is_given_up_on(fake: FakeCurator) -> None:
    fake.put(*(make_node(i) for i in range(1, 8)))  # three backlog events
    fake.stall(after_messages=1)
    recorder = Recorder()
    retry = trionodes.RetryPolicy(initial_delay=0.01, max_delay=0.02, backlog_timeout=0.1)
    async with (
        trionodes.open_curator(fake.host, fake.port) as curator,
        trionodes.open_node_watch(curator, retry=retry) as watch,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(watch.follow, recorder)
        await until(lambda: watch.stats.reconnects == 1)
        assert str(watch.stats.last_error) == (
            "the Curator sent nothing for 0.1 s in the middle of its backlog"
        )
        assert recorder.calls == []  # no partial cluster, ever
        fake.resume()
        await watch.wait_synced()
        await settle()
        assert recorder.kinds == [BatchKind.INITIAL]
        assert recorder.view == dict(fake.nodes)
        nursery.cancel_scope.cancel()


class _Scripted:
    """A Watch call that sends a fixed list of items."""

    def __init__(self, items: list[bytes | CuratorError]) -> None:
        self._items = items

    def take(self) -> list[bytes | CuratorError]:
        items, self._items = self._items, []
        return items

    def set_waker(self, waker: Callable[[], None]) -> None:
        if self._items:
            waker()

    def close(self, cancelled: bool) -> None:
        pass


class FirstCallScripted:
    """Serves the first Watch call from a script, and later ones from a fake."""

    def __init__(self, fake: FakeCurator, script: list[bytes | CuratorError]) -> None:
        self._fake = fake
        self._script: list[bytes | CuratorError] | None = script

    def open_session(
        self, request: trionodes.WatchRequest, *, peer_cert: Mapping[str, Any] | None = None
    ) -> Any:
        script, self._script = self._script, None
        if script is None:
            return self._fake.open_session(request, peer_cert=peer_cert)
        return _Scripted(script)


async def test_a_stream_closed_cleanly_before_its_backlog_ended_is_resynced() -> None:
    fake = FakeCurator()
    fake.put(*(make_node(i) for i in range(1, 4)))
    # Half a backlog (node 9, which the cluster does not hold), then status OK.
    script: list[bytes | CuratorError] = [event(make_node(9)), CuratorError(StatusCode.OK)]
    recorder = Recorder()
    async with (
        serve_watch(FirstCallScripted(fake, script)) as server,
        trionodes.open_curator(server.host, server.port) as curator,
        trionodes.open_node_watch(curator, retry=FAST) as watch,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(watch.follow, recorder)
        stats = watch.stats
        assert stats.reconnects == 1
        assert isinstance(stats.last_error, trionodes.ProtocolError)
        assert str(stats.last_error) == "the Curator closed the stream before its backlog ended"
        assert recorder.view == dict(fake.nodes)  # node 9 never made it in
        nursery.cancel_scope.cancel()
        fake.fail_streams()


async def test_a_silent_connection_is_found_by_keepalive(fake: FakeCurator) -> None:
    fake.put(*(make_node(i) for i in range(1, 4)))
    recorder = Recorder()
    async with (
        trionodes.open_curator(
            fake.host, fake.port, keepalive=0.1, keepalive_timeout=0.1
        ) as curator,
        trionodes.open_node_watch(curator, retry=FAST) as watch,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(watch.follow, recorder)
        recorder.take()
        # A partition: the old connection goes silent; a new one gets through.
        fake.freeze(new_connections=False)
        fake.put(make_node(2, state=NodeState.NEW))
        await until(lambda: watch.stats.reconnects == 1 and watch.stats.synced)
        await settle()
        assert isinstance(watch.stats.last_error, trionodes.ConnectionLost)
        assert recorder.take() == [("updated", nid(2)), ("done",)]
        assert recorder.kinds[-1] is BatchKind.RESYNC
        fake.thaw()
        nursery.cancel_scope.cancel()


async def test_a_long_partition_is_waited_out_however_many_keepalives_fail(
    fake: FakeCurator,
) -> None:
    fake.put(make_node(1))
    async with (
        trionodes.open_curator(
            fake.host, fake.port, keepalive=0.05, keepalive_timeout=0.05
        ) as curator,
        trionodes.open_node_watch(curator, retry=FAST) as watch,
    ):
        await watch.wait_synced()
        # New connections go silent too: each is closed by its own keepalive before
        # the Curator sent anything. That is no TLS trouble, however often it happens.
        fake.freeze(new_connections=True)
        await until(lambda: watch.stats.reconnects > FAST.tls_closures + 1)
        error = watch.stats.last_error
        assert type(error) is trionodes.ConnectionLost
        assert str(error) == (
            f"connection to {fake.host}:{fake.port} closed as dead: the Curator did not "
            "answer a keepalive ping in time"
        )
        fake.thaw()
        await until(lambda: watch.stats.synced)


async def test_a_curator_restart_is_an_outage(watched: Watched) -> None:
    await watched.fake.restart()
    watched.fake.delete(nid(3))
    await watched.reconnected()
    assert watched.recorder.take() == [("deleted", nid(3)), ("done",)]
    assert isinstance(watched.watch.stats.last_error, trionodes.ConnectionLost)
    assert watched.matches_cluster()


async def test_refused_connections_are_retried_until_the_curator_is_back(
    watched: Watched,
) -> None:
    await watched.fake.refuse_connections()
    watched.fake.put(make_node(4))
    await until(lambda: watched.watch.stats.reconnects >= 3)
    assert not watched.watch.stats.connected
    assert watched.recorder.take() == []  # the last synced view holds meanwhile
    await watched.fake.accept_connections()
    await watched.reconnected(3)
    assert watched.recorder.take() == [("new", nid(4)), ("done",)]
    assert watched.matches_cluster()


async def _reconnect_flow() -> list[str]:
    """The main reconnect flow, written against anyio only."""
    seen: list[str] = []
    async with open_fake_curator() as fake:
        fake.put(make_node(1), make_node(2))
        async with (
            trionodes.open_curator(fake.host, fake.port) as curator,
            trionodes.open_node_changes(curator, retry=FAST) as changes,
        ):
            seen.append((await changes.receive()).kind.name)
            await fake.restart()
            fake.delete(nid(2))
            batch = await changes.receive()
            seen.append(f"{batch.kind.name} -{batch.deleted[0].id[-1]}")
    return seen


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_reconnect_flow_on_anyio(backend: str) -> None:
    assert anyio.run(_reconnect_flow, backend=backend) == ["INITIAL", "RESYNC -2"]


def test_reconnect_flow_on_plain_asyncio() -> None:
    assert asyncio.run(_reconnect_flow()) == ["INITIAL", "RESYNC -2"]
