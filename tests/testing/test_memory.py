"""The in-memory curator: the watches against it, in virtual time, with no network.

The Trio tests here run under the autojump clock: waits (backoff, timeouts) take
no wall time, and ``wait_all_tasks_blocked`` sees every task there is.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from functools import partial

import anyio
import anyio.lowlevel
import pytest
import trio
import trio.testing

import trionodes
from trionodes import BatchKind, NodeState
from trionodes.testing import MemoryCurator, encode_watch_event, make_node, open_memory_curator

from ..watch.recorder import Recorder
from .calls import ALL_NODES, one_node, receive_backlog

# Reconnects after at most a virtual second.
QUICK = trionodes.RetryPolicy(initial_delay=1, max_delay=1)


def node_id(index: int) -> str:
    return make_node(index).id


@pytest.fixture
async def memory() -> AsyncIterator[MemoryCurator]:
    # Small backlog events, so that even small clusters arrive over several events.
    async with open_memory_curator(backlog_nodes_per_event=2) as memory:
        yield memory


async def test_follower_sees_the_cluster_then_each_change(
    memory: MemoryCurator, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    memory.put(*(make_node(i) for i in range(1, 6)))  # a backlog of 3 events
    follower = Recorder()
    await nursery.start(trionodes.watch_nodes, memory.curator, follower)
    assert sorted(follower.take()) == [("done",), *sorted(("new", node_id(i)) for i in range(1, 6))]
    assert follower.kinds == [BatchKind.INITIAL]

    memory.change(put=[make_node(6)], delete=[node_id(1)])
    await trio.testing.wait_all_tasks_blocked()
    assert follower.take() == [("new", node_id(6)), ("deleted", node_id(1)), ("done",)]
    assert follower.kinds[1:] == [BatchKind.LIVE]


async def test_follower_resyncs_after_the_streams_fail(
    memory: MemoryCurator, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    memory.put(make_node(1), make_node(2))
    follower = Recorder()
    await nursery.start(partial(trionodes.watch_nodes, retry=QUICK), memory.curator, follower)
    follower.take()
    memory.fail_streams(trionodes.StatusCode.UNAVAILABLE, "leader lost")
    memory.change(put=[make_node(3)], delete=[node_id(1)])  # while the watch waits
    await trio.sleep(2)
    assert follower.take() == [("new", node_id(3)), ("deleted", node_id(1)), ("done",)]
    assert follower.kinds == [BatchKind.INITIAL, BatchKind.RESYNC]
    assert (memory.streams_opened, memory.active_streams) == (2, 1)


async def test_watch_node_sees_its_node_until_deleted(
    memory: MemoryCurator, autojump_clock: trio.testing.MockClock
) -> None:
    memory.put(make_node(1), make_node(2))
    states = []
    async with trionodes.watch_node(memory.curator, node_id(2)) as watcher:
        async for node in watcher:
            states.append(node.state)
            if len(states) == 1:
                memory.put(make_node(1, state=NodeState.STANDBY))  # not this one
                memory.put(make_node(2, state=NodeState.STANDBY))
            else:
                memory.delete(node_id(2))
        assert watcher.deleted
    assert states == [NodeState.UP, NodeState.STANDBY]


async def test_a_stalled_backlog_times_out_in_virtual_time(
    memory: MemoryCurator, autojump_clock: trio.testing.MockClock
) -> None:
    memory.put(*(make_node(i) for i in range(1, 6)))
    memory.stall(after_messages=1)  # every call stops after its first backlog event
    retry = trionodes.RetryPolicy(backlog_timeout=600, initial_delay=1, max_delay=1)
    started, wall_started = trio.current_time(), time.monotonic()
    async with trionodes.open_node_watch(memory.curator, retry=retry) as watch:
        await trio.sleep(602)  # virtual: the first stream gives up, a second one opens
        assert isinstance(watch.stats.last_error, trionodes.ConnectionLost)
        assert "600 s" in str(watch.stats.last_error)
        assert (memory.streams_opened, memory.streams_cancelled) == (2, 1)
        memory.resume()
        await watch.wait_synced()
        assert len(watch.nodes) == 5
    assert trio.current_time() - started > 600
    assert time.monotonic() - wall_started < 5


async def test_a_refused_call_ends_the_watch(
    memory: MemoryCurator, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[object] = []

    def refuse(cert: object) -> trionodes.CuratorError:
        seen.append(cert)
        return trionodes.CuratorError(trionodes.StatusCode.PERMISSION_DENIED, "not an owner")

    memory.authorize = refuse
    with pytest.raises(trionodes.CuratorError) as caught:
        await trionodes.watch_nodes(memory.curator, Recorder())
    assert caught.value.status is trionodes.StatusCode.PERMISSION_DENIED
    assert (seen, memory.streams_refused, memory.streams_opened) == ([None], 1, 0)


def drop_streams(memory: MemoryCurator) -> None:
    memory.drop_streams()


def send_garbage(memory: MemoryCurator) -> None:
    memory.send_raw(b"\xff\xff not a WatchEvent")


@pytest.mark.parametrize(
    ("fault", "error", "dropped"),
    [(drop_streams, trionodes.ConnectionLost, 1), (send_garbage, trionodes.ProtocolError, 0)],
)
async def test_a_fault_makes_the_watch_start_over(
    memory: MemoryCurator,
    autojump_clock: trio.testing.MockClock,
    fault: Callable[[MemoryCurator], None],
    error: type[trionodes.TrionodesError],
    dropped: int,
) -> None:
    memory.put(make_node(1))
    async with trionodes.open_node_watch(memory.curator, retry=QUICK) as watch:
        await watch.wait_synced()
        fault(memory)
        memory.put(make_node(2))  # after the fault: seen in the new stream's backlog
        await trio.sleep(2)
        assert isinstance(watch.stats.last_error, error)
        assert (watch.stats.reconnects, memory.streams_opened) == (1, 2)
        assert set(watch.nodes) == {node_id(1), node_id(2)}
    await memory.wait_idle()
    assert (memory.streams_dropped, memory.streams_cancelled) == (dropped, 2 - dropped)


async def test_exit_ends_open_calls_and_refuses_later_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    memory_cm = open_memory_curator()
    memory = await memory_cm.__aenter__()
    async with memory.curator._open_stream(ALL_NODES) as stream:
        await receive_backlog(stream)
        await memory_cm.__aexit__(None, None, None)
        with pytest.raises(trionodes.CuratorError) as caught:
            await stream.receive()
        assert caught.value.status is trionodes.StatusCode.UNAVAILABLE
    async with memory.curator._open_stream(one_node(1)) as stream:
        with pytest.raises(trionodes.ConnectionLost):
            await stream.receive()
    assert memory.active_streams == 0


async def test_a_dropped_call_keeps_what_it_already_took(
    memory: MemoryCurator, autojump_clock: trio.testing.MockClock
) -> None:
    async with memory.curator._open_stream(ALL_NODES) as stream:
        await receive_backlog(stream)
        memory.put(make_node(1))
        memory.put(make_node(2))
        memory.stall(after_messages=1)
        first = await stream.receive()  # the first change is taken; the second waits
        memory.drop_streams()
        with pytest.raises(trionodes.ConnectionLost):
            await stream.receive()
        with pytest.raises(trionodes.ConnectionLost):
            await stream.receive()  # and stays ended
    assert first == encode_watch_event([bytes(make_node(1))], [])
    assert (memory.streams_dropped, memory.streams_cancelled) == (1, 0)


async def _follow_on_anyio() -> list[tuple[str, ...]]:
    """A watch and a change, with anyio only (run on asyncio below)."""
    async with open_memory_curator() as memory, anyio.create_task_group() as tasks:
        memory.put(make_node(1))
        follower = Recorder()
        await tasks.start(trionodes.watch_nodes, memory.curator, follower)
        memory.put(make_node(1, address="10.9.9.9"))
        while len(follower.calls) < 4:
            await anyio.lowlevel.checkpoint()
        tasks.cancel_scope.cancel()
    return follower.calls


def test_runs_on_asyncio() -> None:
    calls = anyio.run(_follow_on_anyio, backend="asyncio")
    assert calls == [("new", node_id(1)), ("done",), ("updated", node_id(1)), ("done",)]
