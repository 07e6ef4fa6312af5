"""Slow follower: memory stays flat and the follower ends with every node's latest state.

The benchmark Curator (another process) serves 1,000 nodes, then streams a million
one-node updates (fewer with ``--quick``) as fast as the client takes them, then an
end marker. The follower sleeps in every ``batch_done``, far slower than the
stream. The client runs in a fresh process of its own, so that its resident set
size (RSS, sampled at every batch) reflects this run alone; the baseline is its RSS
once synced. For scale, the table also gives the size of all the events, which a
queue of them would hold. When the follower sees the end marker, the benchmark asserts that it
holds the latest generation of every node.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import anyio

import trionodes
from trionodes import Node

from . import cluster
from .server import CuratorProcess

NODES = 1_000
# The follower's pause in every batch_done.
PAUSE = 0.02
_PAGE = 4096


def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * _PAGE


def _peak_rss() -> int:
    """This process's peak RSS, between samples too (unlike ru_maxrss, not inherited
    from the parent across exec)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # in kB
    raise RuntimeError("no VmHWM in /proc/self/status")


class _SleepyFollower(trionodes.Follower):
    """Keeps the latest state of every node and sleeps after each batch."""

    def __init__(self) -> None:
        self.latest: dict[str, Node] = {}
        self.batches = 0
        self.rss: list[int] = []
        self.end = anyio.Event()
        self._end_id = cluster.node_id(NODES)

    def filter(self, node: Node) -> bool:
        return True

    def equals(self, a: Node, b: Node) -> bool:
        return False

    def new(self, node: Node) -> None:
        if node.id == self._end_id:
            self.end.set()
        else:
            self.latest[node.id] = node

    def updated(self, prev: Node, node: Node) -> None:
        self.latest[node.id] = node

    def deleted(self, prev: Node) -> None:
        del self.latest[prev.id]

    async def batch_done(self) -> None:
        self.batches += 1
        self.rss.append(_rss())
        await anyio.sleep(PAUSE)


def expected_generations(updates: int) -> dict[str, int]:
    """Each node's generation after ``updates`` updates of :func:`cluster.updates`."""
    final = {cluster.node_id(index): 0 for index in range(NODES)}
    for step in range(updates):
        final[cluster.node_id(cluster.update_target(step, NODES))] = 1 + step
    return final


async def _follow(port: int, updates: int) -> dict[str, Any]:
    server = _ParentPipe()
    async with (
        trionodes.open_curator("127.0.0.1", port) as curator,
        anyio.create_task_group() as tasks,
    ):
        follower = _SleepyFollower()
        await tasks.start(trionodes.watch_nodes, curator, follower)
        synced_rss = _rss()
        started = time.perf_counter()
        server.command(f"stream {updates}")
        await follower.end.wait()
        spent = time.perf_counter() - started
        tasks.cancel_scope.cancel()
    got = {node_id: cluster.generation_of(node) for node_id, node in follower.latest.items()}
    assert got == expected_generations(updates), "the follower missed a latest state"
    return {
        "updates": updates,
        "seconds": spent,
        "batches": follower.batches,
        "synced_rss": synced_rss,
        # Once the working set is in place, a tenth of the way through.
        "early_rss": follower.rss[len(follower.rss) // 10],
        "final_rss": follower.rss[-1],
        "peak_rss": max(*follower.rss, _peak_rss()),
    }


class _ParentPipe:
    """Asks the parent process to send a command to the benchmark Curator."""

    def command(self, line: str) -> None:
        print(line, flush=True)
        if sys.stdin.readline().strip() != "ok":
            raise RuntimeError(f"the parent did not pass on {line!r}")


def _child() -> None:
    port, updates = map(int, sys.argv[2:4])
    result = anyio.run(_follow, port, updates, backend="trio")
    print("result", json.dumps(result), flush=True)


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run the client in a child process, relaying its commands to the server."""
    updates = 100_000 if quick else 1_000_000
    with CuratorProcess() as server:
        server.command(f"cluster {NODES}")
        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.slow_follower",
                "--child",
                str(server.port),
                str(updates),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdin is not None
        assert client.stdout is not None
        for line in client.stdout:
            if line.startswith("result "):
                result: dict[str, Any] = json.loads(line.removeprefix("result "))
                break
            server.command(line.strip())
            client.stdin.write("ok\n")
            client.stdin.flush()
        else:
            raise RuntimeError("the slow follower's client failed")
        client.wait(timeout=60)
    # For scale: the bytes of every event, which a queue of them would hold.
    sample = 1_000
    result["events_bytes"] = sum(map(len, cluster.updates(NODES, sample))) * updates // sample
    return [result]


def report(rows: list[dict[str, Any]]) -> str:
    """The table: RSS once synced, early on, at its peak and at the end; batches made."""
    (row,) = rows
    synced, early = row["synced_rss"], row["early_rss"]
    return "\n".join(
        [
            f"slow follower on Trio: {NODES:,} nodes, {row['updates']:,} updates,"
            f" a follower sleeping {PAUSE * 1000:.0f} ms per batch (RSS in MB)",
            f"{'synced':>7} {'at 10%':>7} {'peak':>7} {'end':>7} {'peak/synced':>11}"
            f" {'end/10%':>7} {'batches':>8} {'updates/s':>10} {'events MB':>10}",
            f"{synced / 1e6:>7.1f} {early / 1e6:>7.1f} {row['peak_rss'] / 1e6:>7.1f}"
            f" {row['final_rss'] / 1e6:>7.1f} {row['peak_rss'] / synced:>10.2f}x"
            f" {row['final_rss'] / early:>6.2f}x {row['batches']:>8,}"
            f" {row['updates'] / row['seconds']:>10,.0f} {row['events_bytes'] / 1e6:>10.0f}",
            "the follower ended with the latest state of every node (asserted)",
        ]
    )


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    _child()
