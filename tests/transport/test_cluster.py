"""open_cluster against a fake Metropolis control plane: real gRPC servers on loopback.

One leader serves Watch, followers answer UNIMPLEMENTED; the leadership moves, members
go down and come back, and the watches follow without ever ending.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import anyio
import pytest
import trio

import trionodes
from trionodes._transport.server import PingPolicy
from trionodes.testing import (
    ClusterPKI,
    FakeCluster,
    make_node,
    open_fake_cluster,
    settle,
)

from ..watch.recorder import Recorder

FAST = trionodes.RetryPolicy(initial_delay=0.01, max_delay=0.2, backlog_timeout=5.0)
CONVERGE_TIMEOUT = 20.0


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds (checked every 10 ms)."""
    with trio.fail_after(CONVERGE_TIMEOUT):
        while not condition():  # noqa: ASYNC110 (changes come from other threads)
            await trio.sleep(0.01)


async def cluster_closed(cluster: FakeCluster) -> None:
    """Wait until every member has closed every connection."""
    await until(lambda: all(member.server.open_connections == 0 for member in cluster.members))


@pytest.fixture(params=[True, False], ids=["tls", "plain"])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[FakeCluster]:
    async with open_fake_cluster(3, tls=request.param, backlog_nodes_per_event=5) as cluster:
        cluster.put(*(make_node(i) for i in range(10, 30)))
        yield cluster


async def test_finds_the_leader_with_followers_listed_first_and_one_down(
    cluster: FakeCluster,
) -> None:
    await cluster.stop_member(1)
    endpoints = [cluster.endpoints[2], cluster.endpoints[1], cluster.endpoints[0]]
    async with (
        trionodes.open_cluster(endpoints, credentials=cluster.credentials) as curator,
        trionodes.open_node_changes(curator, retry=FAST) as changes,
    ):
        batch = await changes.receive()
        assert {node.id for node in batch.new} == set(cluster.nodes)
        assert curator.leader_id == cluster.leader.node_id
        assert curator.port == cluster.leader.port


# A fake member's TLS socket caught mid-handshake by a leader move is, now and then,
# only collected after its server has moved on (server side, in the fake: the
# client's side is held to leaving nothing open in test_bridge.py). Collected here,
# under this filter, rather than in whichever test runs next.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_follows_ten_leader_moves_under_churn_with_every_kind_of_watch(
    cluster: FakeCluster,
) -> None:
    followed = make_node(12).id
    recorder = Recorder()
    moves: list[float] = []
    async with (
        trionodes.open_cluster(cluster.endpoints, credentials=cluster.credentials) as curator,
        trionodes.open_node_watch(curator, retry=FAST) as shared,
        trionodes.open_node_changes(curator, retry=FAST) as changes,
        trionodes.watch_node(curator, followed, retry=FAST) as single,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(shared.follow, recorder)
        await nursery.start(partial(trionodes.watch_nodes, retry=FAST), curator, Recorder())
        pulled: dict[str, trionodes.Node] = {}

        async def pull() -> None:
            async for batch in changes:
                for node in (*batch.new, *(new for _, new in batch.updated)):
                    pulled[node.id] = node
                for node in batch.deleted:
                    del pulled[node.id]

        nursery.start_soon(pull)
        latest: list[trionodes.Node] = []

        async def follow_one() -> None:
            async for node in single:
                latest.append(node)

        nursery.start_soon(follow_one)
        for move in range(10):
            # Churn between moves: what changed is delivered, on the new leader.
            cluster.put(make_node(12, address=f"10.9.{move}.12"), make_node(100 + move))
            cluster.delete(make_node(20 + move).id)
            started = time.monotonic()
            await cluster.move_leader()

            def converged() -> bool:
                return (
                    curator.leader_id == cluster.leader.node_id
                    and recorder.view == dict(cluster.nodes)
                    and pulled == dict(cluster.nodes)
                    and dict(shared.nodes) == dict(cluster.nodes)
                    and bool(latest)
                    and latest[-1] == cluster.nodes[followed]
                )

            await until(converged)
            moves.append(time.monotonic() - started)
        # Nothing but real changes: no update that changed nothing.
        assert all(prev != node for prev, node in recorder.updates)
        assert cluster.leader_moves == 10
        nursery.cancel_scope.cancel()
    moves.sort()
    print(f"leader move to converged view: median {moves[5]:.3f} s, worst {moves[-1]:.3f} s")
    await cluster_closed(cluster)
    gc.collect()


async def test_learns_curator_endpoints_from_the_nodes(cluster: FakeCluster) -> None:
    # Given only the first leader: once it is gone, the others are known from the
    # nodes' running_curator.
    async with (
        trionodes.open_cluster(cluster.endpoints[:1], credentials=cluster.credentials) as curator,
        trionodes.open_node_watch(curator, retry=FAST) as watch,
    ):
        await watch.wait_synced()
        await cluster.move_leader(to=1)
        await cluster.stop_member(0)
        cluster.put(make_node(99))
        await until(lambda: make_node(99).id in watch.nodes)
        assert curator.leader_id == cluster.members[1].node_id


async def test_every_member_down_for_a_while(cluster: FakeCluster) -> None:
    async with (
        trionodes.open_cluster(cluster.endpoints, credentials=cluster.credentials) as curator,
        trionodes.open_node_watch(curator, retry=FAST) as watch,
    ):
        await watch.wait_synced()
        for index in range(3):
            await cluster.stop_member(index)
        await until(lambda: watch.stats.reconnects >= 3 and not watch.stats.connected)
        cluster.put(make_node(77))
        for index in range(3):
            await cluster.start_member(index)
        await until(lambda: make_node(77).id in watch.nodes)
        assert dict(watch.nodes) == dict(cluster.nodes)


async def test_the_wrong_clusters_credentials_end_the_watch_quickly(tmp_path: Path) -> None:
    async with open_fake_cluster(2) as cluster:
        stranger = trionodes.Credentials.from_metroctl(ClusterPKI().write_metroctl_dir(tmp_path))
        with trio.fail_after(10), pytest.raises(trionodes.TLSError, match="cluster"):
            async with (
                trionodes.open_cluster(cluster.endpoints, credentials=stranger) as curator,
                trionodes.open_node_changes(curator, retry=FAST) as changes,
            ):
                await changes.receive()


async def test_no_credentials_against_a_tls_cluster_end_the_watch_quickly() -> None:
    async with open_fake_cluster(2) as cluster:
        with trio.fail_after(10), pytest.raises(trionodes.TLSError):
            async with (
                trionodes.open_cluster(cluster.endpoints) as curator,
                trionodes.open_node_changes(curator, retry=FAST) as changes,
            ):
                await changes.receive()


async def test_too_many_pings_doubles_the_interval_until_the_server_accepts_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A server at gRPC's default policy, scaled down: one ping a second at most.
    strict = PingPolicy(min_interval=1.0, max_strikes=2)
    async with open_fake_cluster(1, tls=False, keepalive_policy=strict) as cluster:
        cluster.put(make_node(1))
        async with (
            trionodes.open_cluster(cluster.endpoints, keepalive=0.1) as curator,
            trionodes.open_node_watch(curator, retry=FAST) as watch,
        ):
            await watch.wait_synced()
            with caplog.at_level(logging.WARNING, logger="trionodes"):
                # 0.1 s doubles to 0.2, 0.4, 0.8, then 1.6 s, which the server accepts.
                await until(lambda: caplog.text.count("too_many_pings); pinging every") >= 4)
                await until(lambda: watch.stats.reconnects >= 4 and watch.stats.synced)
                reconnects = watch.stats.reconnects
                await trio.sleep(4)
            assert watch.stats.reconnects == reconnects
            assert "pinging every 1.6 s" in caplog.text
            assert "did not answer a keepalive ping" not in caplog.text
            assert dict(watch.nodes) == dict(cluster.nodes)


async def test_a_goaway_from_a_shutdown_is_reported_as_such(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        open_fake_cluster(1, tls=False) as cluster,
        trionodes.open_cluster(cluster.endpoints) as curator,
        trionodes.open_node_watch(curator, retry=FAST) as watch,
    ):
        await watch.wait_synced()
        with caplog.at_level(logging.WARNING, logger="trionodes"):
            cluster.leader.server.goaway(debug=b"server shutting down")
            await until(lambda: watch.stats.reconnects >= 1 and watch.stats.synced)
        assert "GOAWAY NO_ERROR (server shutting down)" in caplog.text
        assert "keepalive" not in caplog.text


async def test_nothing_is_left_open_on_any_member_after_exit(cluster: FakeCluster) -> None:
    async with (
        trionodes.open_cluster(cluster.endpoints, credentials=cluster.credentials) as curator,
        trionodes.open_node_changes(curator, retry=FAST) as changes,
    ):
        await changes.receive()
    await settle()
    await cluster_closed(cluster)


def test_follows_a_leader_move_on_asyncio() -> None:
    async def main() -> None:
        async with (
            open_fake_cluster(3) as cluster,
            trionodes.open_cluster(cluster.endpoints, credentials=cluster.credentials) as curator,
            trionodes.open_node_watch(curator, retry=FAST) as watch,
        ):
            cluster.put(make_node(1))
            await watch.wait_synced()
            first = curator.leader_id
            await cluster.move_leader()
            cluster.put(make_node(2))
            with anyio.fail_after(CONVERGE_TIMEOUT):
                while dict(watch.nodes) != dict(cluster.nodes):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            assert curator.leader_id == cluster.leader.node_id != first

    anyio.run(main, backend="asyncio")
