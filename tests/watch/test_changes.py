"""open_node_changes and open_node_watch, end to end against the fake Curator."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trionodes
from trionodes import NodeState
from trionodes.testing import FakeCurator, make_node, settle

from .test_watch_nodes import ids


async def test_first_batch_is_the_whole_cluster(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(*(make_node(i) for i in range(10)))
    async with trionodes.open_node_changes(curator) as changes:
        batch = await changes.receive()
    assert batch.initial
    assert not batch.resync
    assert [node.id for node in batch.new] == sorted(fake.nodes)
    assert batch.updated == ()
    assert batch.deleted == ()
    assert dict(batch.view) == dict(fake.nodes)


async def test_batches_carry_changes_and_immutable_views(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1), make_node(2))
    async with trionodes.open_node_changes(curator) as changes:
        first = await changes.receive()
        fake.change(put=[make_node(1, state=NodeState.STANDBY), make_node(3)], delete=ids(2))
        second = await changes.receive()
    assert second.kind is trionodes.BatchKind.LIVE
    assert [node.id for node in second.new] == ids(3)
    assert [(prev.state, node.state) for prev, node in second.updated] == [
        (NodeState.UP, NodeState.STANDBY)
    ]
    assert [node.id for node in second.deleted] == ids(2)
    assert sorted(second.view) == ids(1, 3)
    # The first batch's view is a snapshot: later batches did not change it.
    assert sorted(first.view) == ids(1, 2)
    assert first.view[ids(1)[0]].state is NodeState.UP


async def test_filter_and_equals_shape_the_batches(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    def up(node: trionodes.Node) -> bool:
        return node.state is NodeState.UP

    def same_state(a: trionodes.Node, b: trionodes.Node) -> bool:
        return a.state == b.state

    fake.put(make_node(1), make_node(2, state=NodeState.NEW))
    async with trionodes.open_node_changes(curator, filter=up, equals=same_state) as changes:
        first = await changes.receive()
        assert [node.id for node in first.new] == ids(1)
        fake.put(make_node(1, address="10.7.7.7"))  # same for this receiver
        fake.put(make_node(2))  # enters the view
        second = await changes.receive()
    assert [node.id for node in second.new] == ids(2)
    assert second.updated == ()


async def test_slow_receiver_gets_latest_state_merged(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1))
    async with trionodes.open_node_changes(curator) as changes:
        await changes.receive()
        for n in range(50):
            fake.put(make_node(1, address=f"10.1.0.{n}"))
        fake.put(make_node(2))
        fake.delete(ids(2)[0])
        await settle()
        merged = await changes.receive()
    # Fifty updates of one node collapse into one; a node created and deleted
    # while the receiver was busy never shows up.
    assert merged.new == ()
    assert merged.deleted == ()
    [(prev, node)] = merged.updated
    assert prev.status is not None
    assert prev.status.external_address == "10.0.0.1"
    assert node.status is not None
    assert node.status.external_address == "10.1.0.49"


async def test_leaving_the_block_cancels_the_call(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    async with trionodes.open_node_changes(curator) as changes:
        await changes.receive()
        assert fake.active_streams == 1
    with trio.fail_after(5):
        await fake.wait_idle()
    assert fake.streams_cancelled == 1


async def test_shared_watch_late_follower_gets_current_cluster(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1))
    async with trionodes.open_node_watch(curator) as watch:
        await watch.wait_synced()
        assert list(watch.nodes) == ids(1)
        fake.put(make_node(2))
        await settle()
        async with watch.open_changes() as changes:
            batch = await changes.receive()
        assert batch.initial
        assert [node.id for node in batch.new] == ids(1, 2)
        assert fake.streams_opened == 1


async def test_follower_outside_the_watch_block_learns_it_closed(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    with pytest.RaisesGroup(trionodes.WatchClosed, flatten_subgroups=True):
        async with trio.open_nursery() as nursery, trionodes.open_node_watch(curator) as watch:
            await nursery.start(watch.follow, trionodes.SimpleFollower())
    with pytest.raises(trionodes.WatchClosed):
        await watch.follow(trionodes.SimpleFollower())


async def test_curator_error_ends_the_watch_with_a_typed_error(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    # The stream's error ends the block (cancelling its body) and comes out as itself.
    with pytest.raises(trionodes.CuratorError) as raised:  # noqa: PT012
        async with trionodes.open_node_changes(curator) as changes:
            await changes.receive()
            fake.fail_streams(trionodes.StatusCode.PERMISSION_DENIED, "no access")
            async for _ in changes:
                pass
    assert raised.value.status is trionodes.StatusCode.PERMISSION_DENIED
    assert raised.value.details == "no access"
