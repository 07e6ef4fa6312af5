"""Test a follower against the fake Curator, with pytest and pytest-trio.

Run it with ``pytest docs/examples/howto_testing.py`` (or as a script).
"""

import subprocess
import sys
from collections.abc import AsyncIterator
from functools import partial

import pytest
import trio
import trio.testing

import trionodes
from trionodes.testing import FakeCurator, make_node, open_fake_curator, settle

NodeState = trionodes.NodeState


# --8<-- [start:follower]
class UpAddresses(trionodes.Follower):
    """The follower under test: publishes the addresses of the UP nodes, per batch."""

    def __init__(self) -> None:
        self.addresses: dict[str, str] = {}
        self.published: list[dict[str, str]] = []

    def filter(self, node: trionodes.Node) -> bool:
        return node.state is NodeState.UP and node.status is not None

    def equals(self, a: trionodes.Node, b: trionodes.Node) -> bool:
        return self._address(a) == self._address(b)

    def new(self, node: trionodes.Node) -> None:
        self.addresses[node.id] = self._address(node)

    def updated(self, prev: trionodes.Node, node: trionodes.Node) -> None:
        self.addresses[node.id] = self._address(node)

    def deleted(self, prev: trionodes.Node) -> None:
        del self.addresses[prev.id]

    def batch_done(self) -> None:
        self.published.append(dict(self.addresses))

    @staticmethod
    def _address(node: trionodes.Node) -> str:
        return node.status.external_address if node.status else ""


# --8<-- [end:follower]


# --8<-- [start:fixtures]
@pytest.fixture
async def fake() -> AsyncIterator[FakeCurator]:
    # A small backlog_nodes_per_event splits even a small cluster over several
    # messages, as a real Curator splits a large one.
    async with open_fake_curator(backlog_nodes_per_event=2) as fake:
        yield fake


@pytest.fixture
async def curator(fake: FakeCurator) -> AsyncIterator[trionodes.Curator]:
    async with trionodes.open_curator(fake.host, fake.port) as curator:
        yield curator


# --8<-- [end:fixtures]


# --8<-- [start:tests]
@pytest.mark.trio
async def test_publishes_the_initial_cluster_once(
    fake: FakeCurator, curator: trionodes.Curator, nursery: trio.Nursery
) -> None:
    fake.put(make_node(1), make_node(2), make_node(3, state=NodeState.NEW))
    follower = UpAddresses()
    # start() returns once the follower has handled the whole initial cluster.
    await nursery.start(trionodes.watch_nodes, curator, follower)
    assert follower.published == [{make_node(1).id: "10.0.0.1", make_node(2).id: "10.0.0.2"}]


@pytest.mark.trio
async def test_publishes_only_changes_that_matter(
    fake: FakeCurator, curator: trionodes.Curator, nursery: trio.Nursery
) -> None:
    fake.put(make_node(1))
    follower = UpAddresses()
    await nursery.start(trionodes.watch_nodes, curator, follower)

    fake.put(make_node(1, labels={"rack": "r9"}))  # not an address change
    fake.put(make_node(2, state=NodeState.NEW))  # not UP
    await settle()  # everything in flight is handled
    assert len(follower.published) == 1

    fake.change(put=[make_node(2)], delete=[make_node(1).id])  # one event
    await settle()
    assert follower.published[1:] == [{make_node(2).id: "10.0.0.2"}]


@pytest.mark.trio
async def test_keeps_following_across_a_curator_failure(
    fake: FakeCurator, curator: trionodes.Curator, nursery: trio.Nursery
) -> None:
    fake.put(make_node(1))
    follower = UpAddresses()
    fast = trionodes.RetryPolicy(initial_delay=0.01, max_delay=0.01)  # no long waits
    await nursery.start(partial(trionodes.watch_nodes, retry=fast), curator, follower)
    fake.fail_streams(trionodes.StatusCode.UNAVAILABLE, "leader lost")
    fake.put(make_node(2))  # made while the watch reconnects
    # The watch waits (in real time) before it reconnects: poll, with a deadline.
    with trio.fail_after(5):
        while len(follower.published) < 2:  # noqa: ASYNC110
            await trio.sleep(0.01)
    assert follower.published[-1] == {make_node(1).id: "10.0.0.1", make_node(2).id: "10.0.0.2"}


# --8<-- [end:tests]


if __name__ == "__main__":
    command = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", __file__]
    raise SystemExit(subprocess.call(command))
