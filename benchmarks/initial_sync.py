"""Initial sync: time and peak memory to the synced signal, against decoding alone.

The benchmark Curator (another process) serves a backlog of realistic nodes in
~2 MiB events. Timed on Trio: from opening the connection to the return of
``await nursery.start(watch_nodes, curator, follower)``, which is when a no-op
follower has handled the whole initial cluster as one batch. The baseline is
decoding the same node bytes alone, with ``Node.parse`` (what trionodes used before
it had its own decoder) and with that decoder.

Memory is the peak of Python allocations (tracemalloc) from before connecting to
the synced signal, in a separate run from the timing; its baseline is what the
decoded messages alone hold (the same objects either decoder builds).

Python's cyclic garbage collector costs much of a big sync: as the heap grows, full
collections scan every object again. So the sync is also timed the way
docs/performance.md suggests for big clusters (the application pauses the collector
until synced), and, with the synced cluster held, one full collection is timed
before and after ``gc.freeze()``.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import anyio

import trionodes
from trionodes import Node
from trionodes._core.decode import parse_node

from . import cluster
from .server import CuratorProcess

SIZES = (10_000, 100_000)


class _NoOpFollower(trionodes.Follower):
    def filter(self, node: Node) -> bool:
        return True

    def equals(self, a: Node, b: Node) -> bool:
        return False

    def new(self, node: Node) -> None:
        pass

    def updated(self, prev: Node, node: Node) -> None:
        pass

    def deleted(self, prev: Node) -> None:
        pass

    def batch_done(self) -> None:
        pass


async def _sync(port: int) -> float:
    """Seconds from connecting to the follower's initial batch being handled."""
    started = time.perf_counter()
    async with (
        trionodes.open_curator("127.0.0.1", port) as curator,
        anyio.create_task_group() as tasks,
    ):
        await tasks.start(trionodes.watch_nodes, curator, _NoOpFollower())
        spent = time.perf_counter() - started
        tasks.cancel_scope.cancel()
    return spent


async def _sync_gc_paused(port: int) -> tuple[float, float, float]:
    """The sync with the collector paused as the docs suggest for big clusters.

    Returns:
        Seconds to synced; then, with the synced cluster held, seconds of one full
        collection, and of one after ``gc.freeze()``.
    """
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        async with (
            trionodes.open_curator("127.0.0.1", port) as curator,
            anyio.create_task_group() as tasks,
        ):
            await tasks.start(trionodes.watch_nodes, curator, _NoOpFollower())
            spent = time.perf_counter() - started
            collection = _timed(gc.collect)
            gc.freeze()
            frozen_collection = _timed(gc.collect)
            gc.unfreeze()
            tasks.cancel_scope.cancel()
    finally:
        gc.enable()
    return spent, collection, frozen_collection


def _timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


async def _sync_peak(port: int) -> int:
    """Peak bytes allocated from before connecting to the synced signal."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        async with (
            trionodes.open_curator("127.0.0.1", port) as curator,
            anyio.create_task_group() as tasks,
        ):
            await tasks.start(trionodes.watch_nodes, curator, _NoOpFollower())
            peak = tracemalloc.get_traced_memory()[1] - before
            tasks.cancel_scope.cancel()
    finally:
        tracemalloc.stop()
    return peak


def _decode_time(decode: Callable[[bytes], Node], raws: list[bytes]) -> float:
    gc.collect()
    started = time.perf_counter()
    decoded = [decode(data) for data in raws]
    spent = time.perf_counter() - started
    del decoded
    return spent


def _decoded_size(raws: list[bytes]) -> int:
    """Bytes the decoded messages hold (decoded with the fast decoder: same objects)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        decoded = [parse_node(data) for data in raws]
        size = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del decoded
    return size


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure each backlog size; best of a few rounds for times."""
    rounds = 1 if quick else 3
    rows = []
    with CuratorProcess() as server:
        for size in SIZES:
            server.command(f"cluster {size}")
            raws = [cluster.node_bytes(index) for index in range(size)]
            anyio.run(_sync, server.port, backend="trio")  # the server encodes its backlog
            sync = min(anyio.run(_sync, server.port, backend="trio") for _ in range(rounds))
            parse = min(_decode_time(Node.parse, raws) for _ in range(rounds))
            fast = min(_decode_time(parse_node, raws) for _ in range(rounds))
            paused = min(
                (anyio.run(_sync_gc_paused, server.port, backend="trio") for _ in range(rounds)),
                key=lambda times: times[0],
            )
            peak = anyio.run(_sync_peak, server.port, backend="trio")
            decoded = _decoded_size(raws)
            rows.append(
                {
                    "nodes": size,
                    "backlog_bytes": sum(map(len, raws)),
                    "sync_s": sync,
                    "node_parse_s": parse,
                    "fast_decode_s": fast,
                    "sync_gc_paused_s": paused[0],
                    "full_collection_s": paused[1],
                    "frozen_collection_s": paused[2],
                    "sync_peak_bytes": peak,
                    "decoded_bytes": decoded,
                }
            )
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    """The tables: seconds and MB, and the ratios the goals are stated in."""
    lines = [
        "initial sync on Trio: seconds to synced, against decoding the same nodes alone",
        f"{'nodes':>8} {'sync':>7} {'Node.parse':>10} {'sync/parse':>10} {'fast decoder':>12}"
        f" {'sync/fast':>9} {'sync, app pauses GC':>19}",
    ]
    for row in rows:
        lines.append(
            f"{row['nodes']:>8,} {row['sync_s']:>7.2f} {row['node_parse_s']:>10.2f}"
            f" {row['sync_s'] / row['node_parse_s']:>9.2f}x {row['fast_decode_s']:>12.2f}"
            f" {row['sync_s'] / row['fast_decode_s']:>8.2f}x {row['sync_gc_paused_s']:>19.2f}"
        )
    lines += [
        "peak memory to synced (tracemalloc, MB), against the decoded nodes alone;"
        " a full GC collection once synced (s)",
        f"{'nodes':>8} {'peak':>7} {'decoded':>8} {'peak/decoded':>12}"
        f" {'full GC':>8} {'after gc.freeze()':>17}",
    ]
    for row in rows:
        lines.append(
            f"{row['nodes']:>8,} {row['sync_peak_bytes'] / 1e6:>7.0f}"
            f" {row['decoded_bytes'] / 1e6:>8.0f}"
            f" {row['sync_peak_bytes'] / row['decoded_bytes']:>11.2f}x"
            f" {row['full_collection_s']:>8.3f} {row['frozen_collection_s']:>17.3f}"
        )
    return "\n".join(lines)
