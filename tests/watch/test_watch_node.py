"""watch_node (NodeInCluster), end to end against the fake Curator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

import trionodes
from trionodes import NodeState
from trionodes.testing import FakeCurator, make_node, open_fake_curator, settle

from .test_watch_nodes import ids


@pytest.fixture
async def spurious() -> AsyncIterator[FakeCurator]:
    async with open_fake_curator(spurious_nodes=True) as fake:
        yield fake


async def test_follows_one_node_until_deleted(
    spurious: FakeCurator,
) -> None:
    fake = spurious
    fake.put(make_node(1), make_node(2), make_node(3))
    async with (
        trionodes.open_curator(fake.host, fake.port) as curator,
        trionodes.watch_node(curator, ids(2)[0]) as watcher,
    ):
        states = []
        async for node in watcher:
            assert node.id == ids(2)[0]  # other nodes in the events were dropped
            assert watcher.node is node
            states.append(node.state)
            if len(states) == 1:
                fake.put(make_node(1, state=NodeState.STANDBY))  # not ours
                fake.put(make_node(2, state=NodeState.STANDBY))
            elif len(states) == 2:
                fake.delete(ids(2)[0])  # a tombstone alone
        assert states == [NodeState.UP, NodeState.STANDBY]
        assert watcher.deleted
        assert watcher.node is not None
        assert watcher.node.state is NodeState.STANDBY


async def test_waits_for_a_node_that_does_not_exist_yet(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    async with trionodes.watch_node(curator, ids(5)[0]) as watcher:
        await settle()
        assert watcher.node is None
        fake.put(make_node(5))
        node = await watcher.__anext__()
        assert node.id == ids(5)[0]


async def test_slow_consumer_gets_the_latest_state(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1))
    async with trionodes.watch_node(curator, ids(1)[0]) as watcher:
        await watcher.__anext__()
        for n in range(20):
            fake.put(make_node(1, address=f"10.3.0.{n}"))
        await settle()
        node = await watcher.__anext__()
        assert node.status is not None
        assert node.status.external_address == "10.3.0.19"
        with trio.move_on_after(0.1) as waited:
            await watcher.__anext__()  # nothing newer: waits
        assert waited.cancelled_caught


async def test_deleted_while_unseen_ends_iteration(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1))
    async with trionodes.watch_node(curator, ids(1)[0]) as watcher:
        await watcher.__anext__()
        fake.put(make_node(1, state=NodeState.DECOMMISSIONED))
        fake.delete(ids(1)[0])
        await settle()
        assert [node async for node in watcher] == []
        assert watcher.deleted
    # Nothing can follow a deletion, so the call was closed.
    with trio.fail_after(5):
        await fake.wait_idle()


async def test_empty_node_id_is_refused(curator: trionodes.Curator) -> None:
    with pytest.raises(trionodes.CuratorError) as raised:
        async with trionodes.watch_node(curator, "") as watcher:
            await watcher.__anext__()
    assert raised.value.status is trionodes.StatusCode.INVALID_ARGUMENT
