"""watch_nodes and Follower semantics, end to end against the fake Curator on loopback."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trionodes
from trionodes import NodeState, SimpleFollower
from trionodes.testing import FakeCurator, make_node, settle

from .recorder import Recorder


def ids(*indexes: int) -> list[str]:
    return [make_node(i).id for i in indexes]


async def test_start_returns_after_whole_cluster_in_one_batch(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(*(make_node(i) for i in range(20, 0, -1)))
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(trionodes.watch_nodes, curator, recorder)
        # The backlog came in 7 events; the follower saw one batch, in id order.
        assert recorder.take() == [("new", i) for i in ids(*range(1, 21))] + [("done",)]
        nursery.cancel_scope.cancel()


async def test_empty_cluster_gets_one_batch_done(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(trionodes.watch_nodes, curator, recorder)
        assert recorder.take() == [("done",)]
        nursery.cancel_scope.cancel()


async def test_live_changes_and_batch_order(fake: FakeCurator, curator: trionodes.Curator) -> None:
    fake.put(make_node(1), make_node(2), make_node(3))
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(trionodes.watch_nodes, curator, recorder)
        recorder.take()

        fake.change(put=[make_node(3, address="10.9.9.9"), make_node(4)], delete=ids(2, 1))
        await settle()
        assert recorder.take() == [
            ("updated", ids(3)[0]),
            ("new", ids(4)[0]),
            ("deleted", ids(1)[0]),
            ("deleted", ids(2)[0]),
            ("done",),
        ]
        prev, node = recorder.updates[-1]
        assert prev.status is not None
        assert prev.status.external_address == "10.0.0.3"
        assert node.status is not None
        assert node.status.external_address == "10.9.9.9"
        assert recorder.view == dict(fake.nodes)
        nursery.cancel_scope.cancel()


async def test_no_batch_done_when_nothing_changed_for_the_follower(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1))
    recorder = Recorder(admit=lambda node: node.state is NodeState.UP)
    async with trio.open_nursery() as nursery:
        await nursery.start(trionodes.watch_nodes, curator, recorder)
        recorder.take()
        fake.put(make_node(1))  # the same state again
        fake.put(make_node(2, state=NodeState.NEW))  # filtered out
        fake.delete(make_node(7).id)  # unknown node
        await settle()
        assert recorder.take() == []
        nursery.cancel_scope.cancel()


async def test_node_that_leaves_the_view_and_returns_is_new(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1), make_node(2))
    # Same for this follower whatever changes, so only entries and exits matter.
    recorder = Recorder(admit=lambda node: node.state is NodeState.UP, same=lambda a, b: True)
    async with trio.open_nursery() as nursery:
        await nursery.start(trionodes.watch_nodes, curator, recorder)
        recorder.take()
        one, two = ids(1, 2)
        fake.put(make_node(1, state=NodeState.STANDBY))
        await settle()
        fake.put(make_node(1))
        await settle()
        fake.delete(two)
        await settle()
        fake.put(make_node(2))
        await settle()
        assert recorder.take() == [
            ("deleted", one),
            ("done",),
            ("new", one),
            ("done",),
            ("deleted", two),
            ("done",),
            ("new", two),
            ("done",),
        ]
        nursery.cancel_scope.cancel()


async def test_equals_keeps_the_state_the_follower_last_saw(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    def same_address(a: trionodes.Node, b: trionodes.Node) -> bool:
        assert a.status is not None
        assert b.status is not None
        return a.status.external_address == b.status.external_address

    fake.put(make_node(1))
    recorder = Recorder(same=same_address)
    async with trio.open_nursery() as nursery:
        await nursery.start(trionodes.watch_nodes, curator, recorder)
        first = recorder.view[ids(1)[0]]
        recorder.take()
        fake.put(make_node(1, state=NodeState.STANDBY))
        await settle()
        assert recorder.take() == []
        fake.put(make_node(1, state=NodeState.STANDBY, address="10.1.1.1"))
        await settle()
        assert recorder.take() == [("updated", ids(1)[0]), ("done",)]
        assert recorder.updates[-1][0] is first
        nursery.cancel_scope.cancel()


async def test_simple_follower_defaults_and_async_callbacks(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1))
    seen: list[str] = []

    async def on_new_updated(node: trionodes.Node) -> None:
        await trio.lowlevel.checkpoint()
        seen.append(node.id)

    def on_batch_done() -> None:
        seen.append("done")

    # No filter_fn, no equals_fn: every node, whole-message equality.
    follower = SimpleFollower(on_new_updated=on_new_updated, on_batch_done=on_batch_done)
    async with trio.open_nursery() as nursery:
        await nursery.start(trionodes.watch_nodes, curator, follower)
        fake.put(make_node(1, state=NodeState.STANDBY))
        await settle()
        fake.put(make_node(1, state=NodeState.STANDBY))
        await settle()
        assert seen == [ids(1)[0], "done", ids(1)[0], "done"]
        nursery.cancel_scope.cancel()


class Boom(Exception):
    pass


@pytest.mark.parametrize("use_start", [True, False])
async def test_follower_exception_propagates_as_itself(
    fake: FakeCurator, curator: trionodes.Curator, use_start: bool
) -> None:
    fake.put(make_node(1), make_node(2))
    calls: list[str] = []

    def on_new_updated(node: trionodes.Node) -> None:
        calls.append(node.id)
        raise Boom(node.id)

    follower = SimpleFollower(
        on_new_updated=on_new_updated, on_batch_done=lambda: calls.append("done")
    )
    with pytest.RaisesGroup(Boom, flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            if use_start:
                await nursery.start(trionodes.watch_nodes, curator, follower)
            else:
                nursery.start_soon(trionodes.watch_nodes, curator, follower)
    assert calls == ids(1)
    await settle()
    assert fake.active_streams == 0


async def test_watch_nodes_raises_the_follower_exception_unwrapped(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1))
    follower = SimpleFollower(on_batch_done=lambda: (_ for _ in ()).throw(Boom("done")))
    with pytest.raises(Boom, match="done"):
        await trionodes.watch_nodes(curator, follower)


async def test_cancel_stops_promptly_and_server_sees_it(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1))
    recorder = Recorder()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(trionodes.watch_nodes, curator, recorder)
            assert fake.active_streams == 1
            scope.cancel()
    with trio.fail_after(5):
        await fake.wait_idle()
    assert fake.streams_cancelled == 1
    recorder.take()
    fake.put(make_node(2))
    await settle()
    assert recorder.take() == []


async def test_one_node_update_touches_one_node(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(*(make_node(i) for i in range(2000)))
    filtered: list[str] = []
    compared: list[str] = []

    def admit(node: trionodes.Node) -> bool:
        filtered.append(node.id)
        return True

    def same(a: trionodes.Node, b: trionodes.Node) -> bool:
        compared.append(b.id)
        return a == b

    async with trio.open_nursery() as nursery:
        await nursery.start(trionodes.watch_nodes, curator, Recorder(admit=admit, same=same))
        assert len(filtered) == 2000
        filtered.clear()
        fake.put(make_node(5, state=NodeState.STANDBY))
        await settle()
        assert filtered == ids(5)
        assert compared == ids(5)
        nursery.cancel_scope.cancel()
