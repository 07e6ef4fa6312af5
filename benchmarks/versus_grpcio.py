"""trionodes against a hand-written grpc.aio client: sync, throughput and memory.

The baseline is what a Python user writes without trionodes
(:mod:`benchmarks.grpcio_client`): ``grpc.aio``, ``protobuf`` messages (upb) and a
dict. Both clients read the same NodesInCluster stream of pre-encoded, realistic
nodes from one benchmark Curator in another process (:mod:`benchmarks.server`), and
every figure is the median and range of several runs of each, in the same run:

* initial sync of 10,000 and 100,000 nodes: wall time from opening the connection
  until the client holds the whole cluster. trionodes is timed twice: to the first
  batch of ``open_node_changes`` (what a receiver gets) and to ``wait_synced`` of
  ``open_node_watch`` (the cluster committed, no batch made). The garbage collector
  is left as the application has it: never paused, frozen or tuned (one full
  collection before each run, so that every run starts from the same heap);
* steady one-node updates to a 1,000-node cluster, as fast as the client takes
  them: events per second from the ``stream`` command to the end marker, trionodes
  (``watch_nodes`` with a follower that does nothing) on Trio and on asyncio, the
  baseline on asyncio (grpc.aio runs on nothing else);
* memory per node after the sync: the growth of the resident set (RSS), each client
  in a fresh process (:mod:`benchmarks.memory_probe`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import anyio

import trionodes

from . import cluster, figures, grpcio_client
from .server import CuratorProcess


@dataclass(frozen=True)
class Config:
    """How big and how many.

    Attributes:
        sync_sizes: Cluster sizes for the initial sync.
        rounds: Runs of each client for each figure.
        stream_nodes: Cluster size for the steady updates.
        stream_events: Updates per throughput run.
        memory_nodes: Cluster size for the memory figure.
    """

    sync_sizes: tuple[int, ...]
    rounds: int
    stream_nodes: int
    stream_events: int
    memory_nodes: int


FULL = Config((10_000, 100_000), 3, 1_000, 30_000, 100_000)
QUICK = Config((10_000,), 3, 1_000, 3_000, 10_000)


async def trionodes_changes_sync(port: int, nodes: int) -> float:
    """Seconds from connecting to the first batch of ``open_node_changes``."""
    started = time.perf_counter()
    async with (
        trionodes.open_curator("127.0.0.1", port) as curator,
        trionodes.open_node_changes(curator) as changes,
    ):
        batch = await changes.receive()
        spent = time.perf_counter() - started
        assert len(batch.new) == nodes
    return spent


async def trionodes_watch_sync(port: int, nodes: int) -> float:
    """Seconds from connecting to ``wait_synced`` of ``open_node_watch`` returning."""
    started = time.perf_counter()
    async with (
        trionodes.open_curator("127.0.0.1", port) as curator,
        trionodes.open_node_watch(curator) as watch,
    ):
        await watch.wait_synced()
        spent = time.perf_counter() - started
        assert len(watch.nodes) == nodes
    return spent


async def baseline_sync(port: int, nodes: int) -> float:
    """Seconds from opening the channel to the hand-written client's backlog being in."""
    spent, watch = await grpcio_client.timed_sync(port)
    assert len(watch.nodes) == nodes
    await watch.close()
    return spent


async def trionodes_stream(server: CuratorProcess, nodes: int, events: int) -> float:
    """Events per second ``watch_nodes`` takes, on the running backend."""
    async with (
        trionodes.open_curator("127.0.0.1", server.port) as curator,
        anyio.create_task_group() as tasks,
    ):
        follower = cluster.EndFollower(nodes)
        await tasks.start(trionodes.watch_nodes, curator, follower)
        started = time.perf_counter()
        server.command(f"stream {events}")
        await follower.end.wait()
        spent = time.perf_counter() - started
        tasks.cancel_scope.cancel()
    return events / spent


async def baseline_stream(server: CuratorProcess, events: int) -> float:
    """Events per second the hand-written client takes."""
    watch = grpcio_client.open_watch(server.port)
    try:
        await watch.sync()
        started = time.perf_counter()
        server.command(f"stream {events}")
        received = 0
        async for event in watch.call:
            grpcio_client.apply(watch.nodes, event)
            received += 1
            if received == events + 1:  # the end marker
                return events / (time.perf_counter() - started)
        raise RuntimeError("the stream ended early")
    finally:
        await watch.close()


def _probe(client: str, port: int, nodes: int) -> float:
    """RSS bytes per node of ``client`` after a sync, in a fresh process."""
    grpcio_client.pb2_dir()  # generated once, inherited by the child
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory_probe", client, str(port), str(nodes)],
        cwd=grpcio_client.ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(json.loads(done.stdout.splitlines()[-1])["rss_bytes_per_node"])


def _sync_rows(server: CuratorProcess, config: Config) -> list[dict[str, Any]]:
    rows = []
    for size in config.sync_sizes:
        server.command(f"cluster {size}")
        asyncio.run(baseline_sync(server.port, size))  # the server encodes its backlog
        runs: dict[str, list[float]] = {"changes": [], "watch": [], "baseline": []}
        for _ in range(config.rounds):
            gc.collect()
            runs["baseline"].append(asyncio.run(baseline_sync(server.port, size)))
            gc.collect()
            runs["changes"].append(
                anyio.run(trionodes_changes_sync, server.port, size, backend="trio")
            )
            gc.collect()
            runs["watch"].append(anyio.run(trionodes_watch_sync, server.port, size, backend="trio"))
        for key, how in (("changes", "first batch"), ("watch", "wait_synced")):
            rows.append(
                figures.row(
                    f"initial sync, {size:,} nodes ({how})",
                    "s",
                    runs[key],
                    runs["baseline"],
                    "ratio_max",
                    2.0,
                    "at most 2x",
                    nodes=size,
                )
            )
    return rows


def _stream_rows(server: CuratorProcess, config: Config) -> list[dict[str, Any]]:
    server.command(f"cluster {config.stream_nodes}")
    nodes, events = config.stream_nodes, config.stream_events
    runs: dict[str, list[float]] = {"trio": [], "asyncio": [], "baseline": []}
    for _ in range(config.rounds):
        runs["baseline"].append(asyncio.run(baseline_stream(server, events)))
        for backend in ("trio", "asyncio"):
            runs[backend].append(
                anyio.run(trionodes_stream, server, nodes, events, backend=backend)
            )
    return [
        figures.row(
            f"one-node updates, {nodes:,}-node cluster, trionodes on {backend}",
            "events/s",
            runs[backend],
            runs["baseline"],
            "ratio_min",
            1.0,
            "at least 1.0x",
            events=events,
        )
        for backend in ("trio", "asyncio")
    ]


def _memory_rows(server: CuratorProcess, config: Config) -> list[dict[str, Any]]:
    nodes = config.memory_nodes
    server.command(f"cluster {nodes}")
    runs: dict[str, list[float]] = {"trionodes": [], "baseline": []}
    for _ in range(config.rounds):
        for client in runs:
            runs[client].append(_probe(client, server.port, nodes))
    return [
        figures.row(
            f"memory per node after a {nodes:,}-node sync (RSS)",
            "B/node",
            runs["trionodes"],
            runs["baseline"],
            "ratio_max",
            1.2,
            "at most 1.2x",
            nodes=nodes,
        )
    ]


def run(quick: bool = False, config: Config | None = None) -> list[dict[str, Any]]:
    """Measure every figure; ``config`` overrides the quick or full sizes."""
    config = config or (QUICK if quick else FULL)
    with CuratorProcess() as server:
        return [
            *_sync_rows(server, config),
            *_stream_rows(server, config),
            *_memory_rows(server, config),
        ]


def report(rows: list[dict[str, Any]]) -> str:
    """The table: trionodes against the hand-written grpc.aio client."""
    return figures.table("trionodes against a hand-written grpc.aio + upb + dict client", rows)
