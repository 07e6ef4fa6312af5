"""Responsiveness: the worst gap of a 10 ms heartbeat while a big cluster is followed.

A heartbeat task sleeps 10 ms again and again, noting when it wakes; the figure is
the longest gap between two wake-ups that overlaps each window. A gap is an upper
bound on the stall that caused it (a stall of S leaves a gap of S to S + 10 ms), and
never less than 10 ms. Three windows, one after the other on one connection:

* sync: from connecting until the client holds the whole cluster (trionodes: the
  first batch of ``open_node_changes``, with its default ``equals``);
* full collection: one ``gc.collect()`` with the synced cluster held (the collector
  is otherwise left alone, as the application has it);
* resync where every node changed: the Curator's ``change`` command moves every
  node to its next generation, then ``fail`` ends the call with ``UNAVAILABLE``;
  the window runs from the failure until the client holds what changed
  (trionodes reconnects after at most 1 ms of backoff and delivers a ``RESYNC``
  batch of every node).

trionodes runs on Trio; the baseline (:mod:`benchmarks.grpcio_client`) on asyncio,
where the same heartbeat runs as an asyncio task; its resync is a new call on the
same channel read into a fresh dict, then compared with the old one (``!=`` per
message) to list what changed.
"""

from __future__ import annotations

import gc
import itertools
import time
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

import trionodes
from trionodes import BatchKind, RetryPolicy

from . import figures, grpcio_client
from .server import CuratorProcess

PERIOD = 0.01
WINDOWS = ("sync", "collection", "resync")


@dataclass(frozen=True)
class Config:
    """How big and how many.

    Attributes:
        nodes: The cluster size.
        rounds: Runs of each client.
    """

    nodes: int
    rounds: int


FULL = Config(100_000, 3)
QUICK = Config(5_000, 3)


class Heartbeat:
    """A task that sleeps :data:`PERIOD` again and again, noting each wake-up."""

    def __init__(self) -> None:
        self.beats: list[float] = []

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Beat until cancelled (start it with ``start``)."""
        self.beats.append(time.perf_counter())
        task_status.started()
        while True:
            await anyio.sleep(PERIOD)
            self.beats.append(time.perf_counter())

    async def worst_gap(self, start: float, end: float) -> float:
        """The longest gap between wake-ups overlapping ``start..end``, in ms.

        Waits for a few more beats first, so that a gap still open at ``end`` counts.
        """
        await anyio.sleep(PERIOD * 3)
        gaps = [
            later - earlier
            for earlier, later in itertools.pairwise(self.beats)
            if later > start and earlier < end
        ]
        return max(gaps) * 1e3


async def trionodes_windows(server: CuratorProcess, nodes: int) -> dict[str, float]:
    """The worst heartbeat gap (ms) of each window, trionodes on Trio."""
    heartbeat = Heartbeat()
    worst = {}
    retry = RetryPolicy(initial_delay=0.001)
    async with anyio.create_task_group() as tasks:
        await tasks.start(heartbeat.run)
        start = time.perf_counter()
        async with (
            trionodes.open_curator("127.0.0.1", server.port) as curator,
            trionodes.open_node_changes(curator, retry=retry) as changes,
        ):
            batch = await changes.receive()
            worst["sync"] = await heartbeat.worst_gap(start, time.perf_counter())
            assert len(batch.new) == nodes
            start = time.perf_counter()
            gc.collect()
            worst["collection"] = await heartbeat.worst_gap(start, time.perf_counter())
            server.command(f"change {nodes}")
            start = time.perf_counter()
            await anyio.to_thread.run_sync(server.command, "fail")
            batch = await changes.receive()
            worst["resync"] = await heartbeat.worst_gap(start, time.perf_counter())
            assert batch.kind is BatchKind.RESYNC
            assert len(batch.updated) == nodes
        tasks.cancel_scope.cancel()
    return worst


async def baseline_windows(server: CuratorProcess, nodes: int) -> dict[str, float]:
    """The worst heartbeat gap (ms) of each window, the hand-written client on asyncio."""
    heartbeat = Heartbeat()
    worst = {}
    async with anyio.create_task_group() as tasks:
        await tasks.start(heartbeat.run)
        start = time.perf_counter()
        watch = grpcio_client.open_watch(server.port)
        try:
            await watch.sync()
            worst["sync"] = await heartbeat.worst_gap(start, time.perf_counter())
            assert len(watch.nodes) == nodes
            start = time.perf_counter()
            gc.collect()
            worst["collection"] = await heartbeat.worst_gap(start, time.perf_counter())
            server.command(f"change {nodes}")
            start = time.perf_counter()
            await anyio.to_thread.run_sync(server.command, "fail")
            watch, changed, _ = await grpcio_client.resync(watch)
            worst["resync"] = await heartbeat.worst_gap(start, time.perf_counter())
            assert len(changed) == nodes
        finally:
            await watch.close()
        tasks.cancel_scope.cancel()
    return worst


def run(quick: bool = False, config: Config | None = None) -> list[dict[str, Any]]:
    """Measure both clients, alternating, on a fresh cluster each run."""
    config = config or (QUICK if quick else FULL)
    nodes = config.nodes
    runs: dict[str, list[dict[str, float]]] = {"trionodes": [], "baseline": []}
    with CuratorProcess() as server:
        # Imports, protobuf generation and first-use set-up stay out of the windows.
        server.command("cluster 100")
        anyio.run(baseline_windows, server, 100, backend="asyncio")
        anyio.run(trionodes_windows, server, 100, backend="trio")
        for _ in range(config.rounds):
            server.command(f"cluster {nodes}")
            gc.collect()
            runs["baseline"].append(anyio.run(baseline_windows, server, nodes, backend="asyncio"))
            server.command(f"cluster {nodes}")
            gc.collect()
            runs["trionodes"].append(anyio.run(trionodes_windows, server, nodes, backend="trio"))
    titles = {
        "sync": f"worst heartbeat gap, {nodes:,}-node sync",
        "collection": f"worst heartbeat gap, full gc.collect() after a {nodes:,}-node sync",
        "resync": f"worst heartbeat gap, {nodes:,}-node resync, every node changed",
    }
    return [
        figures.row(
            titles[window],
            "ms",
            [one[window] for one in runs["trionodes"]],
            [one[window] for one in runs["baseline"]],
            "worst_max",
            50.0,
            "never over 50 ms",
            nodes=nodes,
        )
        for window in WINDOWS
    ]


def report(rows: list[dict[str, Any]]) -> str:
    """The table: worst heartbeat gaps, trionodes on Trio against the baseline."""
    return figures.table(
        f"responsiveness: worst gap of a {PERIOD * 1e3:.0f} ms heartbeat"
        " (trionodes on Trio, baseline on asyncio)",
        rows,
    )
