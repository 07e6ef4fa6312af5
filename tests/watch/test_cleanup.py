"""A cancelled or finished watch leaves no task, stream or connection behind."""

from __future__ import annotations

import pathlib

import trio
import trio.testing

import trionodes
from trionodes.testing import FakeCurator, make_node, settle


def established_connections(port: int) -> int:
    """TCP connections on loopback with ``port`` at either end (both ends count)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = pathlib.Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, remote, state = line.split()[1:4]
            ports = {int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)}
            if state == "01" and port in ports:
                count += 1
    return count


async def test_closing_the_curator_closes_its_connection(fake: FakeCurator) -> None:
    fake.put(make_node(1))
    async with trionodes.open_curator(fake.host, fake.port) as curator:
        for _ in range(3):
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    await nursery.start(trionodes.watch_nodes, curator, trionodes.SimpleFollower())
                    scope.cancel()
        # Calls reuse one connection: two ends of one TCP connection.
        assert established_connections(fake.port) == 2
    await settle()
    assert established_connections(fake.port) == 0
    with trio.fail_after(5):
        await fake.wait_idle()
    assert fake.streams_cancelled == 3


def task_count() -> int:
    """How many tasks the running Trio program has."""

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(child) for n in task.child_nurseries for child in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


async def test_no_task_left_after_a_watch_ends(fake: FakeCurator) -> None:
    before = task_count()
    async with trionodes.open_curator(fake.host, fake.port) as curator:
        async with trionodes.open_node_changes(curator) as changes:
            await changes.receive()
        async with trionodes.watch_node(curator, make_node(1).id) as watcher:
            fake.put(make_node(1))
            await watcher.__anext__()
    await settle()
    assert task_count() == before
