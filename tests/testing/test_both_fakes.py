"""The network fake and the in-memory curator serve the same model: same calls, same watches."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import partial

import anyio
import pytest
import trio

import trionodes
from trionodes import BatchKind, StatusCode
from trionodes._core.wire import split_watch_event
from trionodes.testing import (
    FakeCurator,
    MemoryCurator,
    make_node,
    open_fake_curator,
    open_memory_curator,
    settle,
)

from ..watch.recorder import Recorder
from .calls import ALL_NODES, one_node, receive_backlog

QUICK = trionodes.RetryPolicy(initial_delay=0.01, max_delay=0.01)


def node_id(index: int) -> str:
    return make_node(index).id


@pytest.fixture(params=["network", "memory"])
async def served(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[FakeCurator | MemoryCurator, trionodes.Curator]]:
    """A fake of each kind, with small backlog events, and the curator to reach it."""
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "network":
            fake = await stack.enter_async_context(open_fake_curator(backlog_nodes_per_event=2))
            curator = await stack.enter_async_context(trionodes.open_curator(fake.host, fake.port))
            yield fake, curator
        else:
            memory = await stack.enter_async_context(open_memory_curator(backlog_nodes_per_event=2))
            yield memory, memory.curator


async def test_calls_see_the_same_messages(
    served: tuple[FakeCurator | MemoryCurator, trionodes.Curator],
) -> None:
    cluster, curator = served
    cluster.put(*(make_node(i) for i in range(1, 6)))
    cluster.stall(after_messages=2)
    async with curator._open_stream(ALL_NODES) as nodes, curator._open_stream(one_node(1)) as one:
        first = split_watch_event(await nodes.receive())
        assert (len(first.nodes), first.last_backlogged) == (2, False)
        assert [i for i, _ in split_watch_event(await one.receive()).nodes] == [node_id(1)]
        cluster.delete(node_id(1))
        # The stall: one message more for each call, then nothing until resumed.
        assert len(split_watch_event(await nodes.receive()).nodes) == 2
        tombstone = split_watch_event(await one.receive())
        assert (tombstone.nodes, tombstone.tombstones) == ((), (node_id(1),))
        with anyio.move_on_after(0.1) as waited:
            await nodes.receive()
        assert waited.cancelled_caught
        cluster.resume()
        last = split_watch_event(await nodes.receive())
        assert (len(last.nodes), last.last_backlogged) == (1, True)
        assert split_watch_event(await nodes.receive()).tombstones == (node_id(1),)
        cluster.fail_streams(StatusCode.OK)
        for stream in (nodes, one):
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
    async with curator._open_stream(ALL_NODES) as nodes:
        await receive_backlog(nodes)
        cluster.fail_streams(StatusCode.UNAVAILABLE, "leader lost")
        with pytest.raises(trionodes.CuratorError) as caught:
            await nodes.receive()
        assert (caught.value.status, caught.value.details) == (
            StatusCode.UNAVAILABLE,
            "leader lost",
        )
    cluster.authorize = lambda cert: trionodes.CuratorError(StatusCode.UNAUTHENTICATED, "who?")
    async with curator._open_stream(ALL_NODES) as nodes:
        with pytest.raises(trionodes.CuratorError) as caught:
            await nodes.receive()
        assert caught.value.status is StatusCode.UNAUTHENTICATED
    await cluster.wait_idle()
    counters = (cluster.streams_opened, cluster.streams_cancelled, cluster.streams_refused)
    assert counters == (3, 0, 1)


async def test_a_follower_sees_the_same_batches(
    served: tuple[FakeCurator | MemoryCurator, trionodes.Curator], nursery: trio.Nursery
) -> None:
    cluster, curator = served
    cluster.put(make_node(1), make_node(2), make_node(3))
    follower = Recorder()
    await nursery.start(partial(trionodes.watch_nodes, retry=QUICK), curator, follower)
    assert sorted(follower.take()) == [("done",), *sorted(("new", node_id(i)) for i in (1, 2, 3))]

    cluster.change(put=[make_node(4)], delete=[node_id(1)])
    await settle()
    assert follower.take() == [("new", node_id(4)), ("deleted", node_id(1)), ("done",)]

    cluster.fail_streams(StatusCode.UNAVAILABLE, "leader lost")
    cluster.put(make_node(2, address="10.9.9.9"))  # while the watch reconnects
    with trio.fail_after(5):
        while not follower.calls:  # noqa: ASYNC110  (real time: the backoff)
            await trio.sleep(0.01)
    assert follower.take() == [("updated", node_id(2)), ("done",)]
    assert follower.kinds == [BatchKind.INITIAL, BatchKind.LIVE, BatchKind.RESYNC]
    assert cluster.streams_opened == 2
