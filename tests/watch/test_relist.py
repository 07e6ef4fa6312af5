"""Relist: a watch heals deletions the Curator never reported (spec section 5).

The in-memory tests run under Trio's autojump clock, so an hour-long relist
interval takes no wall time; one test runs against the network fake.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from functools import partial

import pytest
import trio
import trio.testing

import trionodes
from trionodes import BatchKind, NodeState
from trionodes.testing import FakeCurator, MemoryCurator, make_node, open_memory_curator, settle

from .recorder import Recorder

# Reconnects after at most a virtual second.
QUICK = trionodes.RetryPolicy(initial_delay=1, max_delay=1)
RELIST = 100.0


def nid(index: int) -> str:
    return make_node(index).id


@pytest.fixture
async def memory() -> AsyncIterator[MemoryCurator]:
    async with open_memory_curator(backlog_nodes_per_event=2) as memory:
        memory.put(*(make_node(i) for i in range(1, 4)))
        yield memory


async def follow(
    memory: MemoryCurator, nursery: trio.Nursery, relist: float | None = RELIST
) -> tuple[trionodes.ClusterWatch, Recorder]:
    """A cluster watch with one recording follower, past its initial batch."""
    watch: trionodes.ClusterWatch = await nursery.start(
        partial(opened_watch, memory.curator, relist=relist)
    )
    recorder = Recorder()
    await nursery.start(watch.follow, recorder)
    recorder.take()
    return watch, recorder


async def opened_watch(
    curator: trionodes.Curator,
    *,
    relist: float | None,
    task_status: trio.TaskStatus[trionodes.ClusterWatch],
) -> None:
    async with trionodes.open_node_watch(curator, retry=QUICK, relist=relist) as watch:
        task_status.started(watch)
        await trio.sleep_forever()


async def test_a_silent_deletion_is_healed_at_the_next_relist(
    memory: MemoryCurator, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    watch, recorder = await follow(memory, nursery)
    start = trio.current_time()
    memory.delete(nid(2), silently=True)
    await trio.sleep(RELIST - 10)
    # The stream never said: a ghost node, until the relist.
    assert nid(2) in watch.nodes
    assert recorder.take() == []
    await trio.sleep(20)
    assert recorder.take() == [("deleted", nid(2)), ("done",)]
    assert recorder.kinds[-1] is BatchKind.RESYNC
    assert nid(2) not in watch.nodes
    assert dict(watch.nodes) == dict(memory.nodes)
    stats = watch.stats
    assert (stats.relists, stats.reconnects, stats.last_error) == (1, 0, None)
    assert stats.synced
    # Relisted once, at the interval: a fresh stream, the old one cancelled.
    assert (memory.streams_opened, memory.streams_cancelled, memory.active_streams) == (2, 1, 1)
    assert trio.current_time() - start >= RELIST


async def test_a_relist_that_finds_no_difference_delivers_nothing(
    memory: MemoryCurator, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    watch, recorder = await follow(memory, nursery)
    await trio.sleep(3 * RELIST + 10)
    assert watch.stats.relists == 3
    assert recorder.take() == []
    assert recorder.kinds == [BatchKind.INITIAL]
    assert watch.stats.batches_delivered == 1
    assert memory.streams_opened == 4


async def test_live_changes_still_flow_between_relists(
    memory: MemoryCurator, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    watch, recorder = await follow(memory, nursery)
    await trio.sleep(RELIST + 10)
    assert watch.stats.relists == 1
    memory.put(make_node(4))
    await trio.testing.wait_all_tasks_blocked()
    assert recorder.take() == [("new", nid(4)), ("done",)]
    assert recorder.kinds[-1] is BatchKind.LIVE


async def test_the_old_view_stays_while_the_relist_backlog_comes(
    memory: MemoryCurator, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    memory.put(make_node(4), make_node(5))  # a backlog of two events after the deletion
    watch, recorder = await follow(memory, nursery)
    memory.delete(nid(1), silently=True)
    # The relist's backlog is held back after its first event; a change comes meanwhile.
    memory.stall(after_messages=1)
    await trio.sleep(RELIST + 10)
    memory.put(make_node(3, state=NodeState.NEW))
    await trio.testing.wait_all_tasks_blocked()
    assert watch.stats.relists == 1
    assert not watch.stats.synced
    assert nid(1) in watch.nodes
    assert watch.nodes[nid(3)].state is NodeState.UP
    assert recorder.take() == []
    memory.resume()
    await trio.testing.wait_all_tasks_blocked()
    # The backlog is committed (one RESYNC batch), then the change that came while
    # it was held back follows: in a batch of its own, or merged into it.
    calls = recorder.take()
    assert sorted(call for call in calls if call != ("done",)) == [
        ("deleted", nid(1)),
        ("updated", nid(3)),
    ]
    assert recorder.kinds[1] is BatchKind.RESYNC
    assert recorder.view == dict(memory.nodes)
    assert dict(watch.nodes) == dict(memory.nodes)


async def test_relist_none_never_relists(
    memory: MemoryCurator, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    watch, recorder = await follow(memory, nursery, relist=None)
    memory.delete(nid(2), silently=True)
    await trio.sleep(24 * 3600)
    assert watch.stats.relists == 0
    assert memory.streams_opened == 1
    # What relisting prevents: the ghost stays for as long as the stream lasts.
    assert nid(2) in watch.nodes
    assert recorder.take() == []


async def test_the_default_relists_hourly(
    memory: MemoryCurator, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    recorder = Recorder()
    await nursery.start(trionodes.watch_nodes, memory.curator, recorder)
    recorder.take()
    memory.delete(nid(3), silently=True)
    await trio.sleep(3600 - 1)
    assert recorder.take() == []
    await trio.sleep(2)
    assert recorder.take() == [("deleted", nid(3)), ("done",)]


async def test_a_reconnect_restarts_the_relist_clock(
    memory: MemoryCurator, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    watch, _ = await follow(memory, nursery)
    await trio.sleep(RELIST * 0.8)
    memory.drop_streams()
    await trio.sleep(RELIST * 0.5)  # past the first stream's relist time
    assert (watch.stats.reconnects, watch.stats.relists) == (1, 0)
    await trio.sleep(RELIST * 0.6)
    assert (watch.stats.reconnects, watch.stats.relists) == (1, 1)


async def test_a_relist_is_one_info_line_and_no_failure(
    memory: MemoryCurator,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="trionodes"):
        watch, _ = await follow(memory, nursery)
        await trio.sleep(RELIST + 10)
    assert watch.stats.relists == 1
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.INFO,
            "watch of the cluster at memory:0: relisting, "
            "to find deletions the stream may have missed",
        )
    ]


async def test_changes_streams_get_a_resync_batch(
    memory: MemoryCurator, autojump_clock: trio.testing.MockClock
) -> None:
    async with trionodes.open_node_changes(memory.curator, relist=RELIST) as changes:
        assert len((await changes.receive()).new) == 3
        memory.delete(nid(1), silently=True)
        batch = await changes.receive()
    assert batch.kind is BatchKind.RESYNC
    assert [node.id for node in batch.deleted] == [nid(1)]
    assert (batch.new, batch.updated) == ((), ())
    assert trio.current_time() >= RELIST


async def test_watch_node_relist_ends_the_iteration_of_a_silently_deleted_node(
    memory: MemoryCurator, autojump_clock: trio.testing.MockClock
) -> None:
    async with trionodes.watch_node(memory.curator, nid(2), relist=RELIST) as watch:
        assert (await watch.__anext__()).id == nid(2)
        memory.delete(nid(2), silently=True)
        assert [node async for node in watch] == []
        assert watch.deleted
        assert watch.stats.relists == 1
    assert trio.current_time() >= RELIST


async def test_watch_node_relist_yields_nothing_when_the_node_is_unchanged(
    memory: MemoryCurator, autojump_clock: trio.testing.MockClock
) -> None:
    async with trionodes.watch_node(memory.curator, nid(2), relist=RELIST) as watch:
        await watch.__anext__()
        with trio.move_on_after(3 * RELIST + 10):
            await watch.__anext__()
        assert watch.stats.relists == 3
        assert watch.stats.batches_delivered == 1
        memory.put(make_node(2, state=NodeState.NEW))
        assert (await watch.__anext__()).state is NodeState.NEW


async def test_watch_node_waiting_for_its_node_does_not_relist(
    memory: MemoryCurator, autojump_clock: trio.testing.MockClock
) -> None:
    async with trionodes.watch_node(memory.curator, nid(9), relist=RELIST) as watch:
        with trio.move_on_after(3 * RELIST):
            await watch.__anext__()
        assert watch.stats.relists == 0
        assert memory.streams_opened == 1


async def test_relist_heals_a_silent_deletion_over_the_network(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(*(make_node(i) for i in range(1, 4)))
    recorder = Recorder()
    async with (
        trionodes.open_node_watch(curator, relist=0.5) as watch,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(watch.follow, recorder)
        recorder.take()
        fake.delete(nid(1), silently=True)
        await settle()
        assert recorder.take() == []
        with trio.fail_after(10):
            while watch.stats.relists < 1 or not watch.stats.synced:  # noqa: ASYNC110
                await trio.sleep(0.01)
        await settle()
        assert recorder.take() == [("deleted", nid(1)), ("done",)]
        assert recorder.kinds[-1] is BatchKind.RESYNC
        assert (watch.stats.reconnects, watch.stats.last_error) == (0, None)
        nursery.cancel_scope.cancel()
