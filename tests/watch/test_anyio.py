"""The main flows on anyio, with both of its backends, and on plain asyncio."""

from __future__ import annotations

import asyncio

import anyio
import pytest

import trionodes
from trionodes.testing import make_node, open_fake_curator

BACKENDS = ["asyncio", "trio"]


async def _follow_changes() -> tuple[list[str], list[str]]:
    followed: list[str] = []
    log: list[str] = []
    async with open_fake_curator(backlog_nodes_per_event=2) as fake:
        fake.put(*(make_node(i) for i in range(5)))
        async with trionodes.open_curator(fake.host, fake.port) as curator:
            follower = trionodes.SimpleFollower(
                on_new_updated=lambda node: followed.append(node.id[-2:]),
                on_deleted=lambda node: followed.append("-" + node.id[-2:]),
                on_batch_done=lambda: followed.append("done"),
            )
            async with anyio.create_task_group() as tasks:
                await tasks.start(trionodes.watch_nodes, curator, follower)
                log.append(f"started after {len(followed)} calls")
                fake.delete(make_node(0).id)
                async with trionodes.open_node_changes(curator) as changes:
                    batch = await changes.receive()
                    log.append(f"changes {len(batch.new)}")
                    fake.put(make_node(9))
                    batch = await changes.receive()
                    log.append(f"changes +{batch.new[0].id[-2:]}")
                async with trionodes.watch_node(curator, make_node(3).id) as watcher:
                    node = await watcher.__anext__()
                    log.append(f"node {node.id[-2:]}")
                tasks.cancel_scope.cancel()
        with anyio.fail_after(5):
            await fake.wait_idle()
        log.append(f"cancelled {fake.streams_cancelled}")
    return followed, log


# The follower's calls, and the rest of the program's steps: each list is in order,
# but how the two interleave depends on the scheduler.
EXPECTED = (
    ["00", "01", "02", "03", "04", "done", "-00", "done", "09", "done"],
    ["started after 6 calls", "changes 4", "changes +09", "node 03", "cancelled 3"],
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_main_flows_on_anyio(backend: str) -> None:
    assert anyio.run(_follow_changes, backend=backend) == EXPECTED


def test_main_flows_on_plain_asyncio() -> None:
    assert asyncio.run(_follow_changes()) == EXPECTED


@pytest.mark.parametrize("backend", BACKENDS)
def test_follower_exception_is_reachable_on_anyio(backend: str) -> None:
    class Boom(Exception):
        pass

    async def main() -> None:
        async with open_fake_curator() as fake:
            fake.put(make_node(1))
            async with trionodes.open_curator(fake.host, fake.port) as curator:

                def explode(node: trionodes.Node) -> None:
                    raise Boom(node.id)

                await trionodes.watch_nodes(
                    curator, trionodes.SimpleFollower(on_new_updated=explode)
                )

    with pytest.raises(Boom):
        anyio.run(main, backend=backend)
