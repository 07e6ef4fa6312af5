"""End-to-end throughput: one-node events from a Curator in another process.

The benchmark Curator (:mod:`benchmarks.server`) serves a 1,000-node cluster, then,
once the client has synced, streams one-node updates as fast as the client takes
them. Timed, from the ``stream`` command to the end marker, on Trio and on asyncio:

* trionodes: ``watch_nodes`` with a follower that does nothing but notice the end
  marker;
* the baseline: a bare ``async for`` over a grpclib call (what a generated
  betterproto2 stub does), which decodes every event; under Trio it runs as one
  asyncio coroutine on trionodes' bridge (a private loop on a worker thread), the
  way trionodes runs its calls.

Wall time is the figure; the client's CPU time per event is reported beside it.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import sniffio
from grpclib.client import Channel
from grpclib.const import Cardinality

import trionodes
from trionodes import WatchRequest
from trionodes._proto.metropolis.node.core.curator.proto.api import (
    WatchEvent,
    WatchEventProgress,
    WatchRequestNodesInCluster,
)
from trionodes._transport.bridge import open_bridge

from . import cluster
from .server import CuratorProcess

NODES = 1_000
BACKENDS = ("trio", "asyncio")
_WATCH = "/metropolis.node.core.curator.proto.api.Curator/Watch"


class _Clock:
    """Wall and CPU time since it was made."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self._wall, time.process_time() - self._cpu


async def trionodes_stream(server: CuratorProcess, events: int) -> tuple[float, float]:
    """Wall and CPU seconds for ``watch_nodes`` to take ``events`` updates."""
    async with (
        trionodes.open_curator("127.0.0.1", server.port) as curator,
        anyio.create_task_group() as tasks,
    ):
        follower = cluster.EndFollower(NODES)
        await tasks.start(trionodes.watch_nodes, curator, follower)
        clock = _Clock()
        server.command(f"stream {events}")
        await follower.end.wait()
        spent = clock.read()
        tasks.cancel_scope.cancel()
    return spent


async def _bare_loop(port: int, server: CuratorProcess, events: int) -> tuple[float, float]:
    """The baseline, all on asyncio: a grpclib call in a bare loop."""
    channel = Channel("127.0.0.1", port)
    try:
        request = WatchRequest(nodes_in_cluster=WatchRequestNodesInCluster())
        received = 0
        clock = None
        # What the betterproto2 stub we no longer generate did: grpclib's default
        # codec calls the messages' SerializeToString and FromString.
        async with channel.request(
            _WATCH, Cardinality.UNARY_STREAM, WatchRequest, WatchEvent
        ) as stream:
            await stream.send_message(request, end=True)
            async for event in stream:
                if clock is None:
                    if event.progress == WatchEventProgress.LAST_BACKLOGGED:
                        clock = _Clock()
                        server.command(f"stream {events}")
                    continue
                received += 1
                if received == events + 1:  # the end marker
                    spent = clock.read()
                    # Leaving the block would wait for trailers the server never sends.
                    await stream.cancel()
                    return spent
        raise RuntimeError("the stream ended early")
    finally:
        channel.close()


async def bare_stream(server: CuratorProcess, events: int) -> tuple[float, float]:
    """Wall and CPU seconds for the bare grpclib loop to take ``events`` updates."""
    if sniffio.current_async_library() == "trio":
        async with open_bridge() as bridge:
            return await bridge.run(_bare_loop, server.port, server, events)
    return await _bare_loop(server.port, server, events)


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure both clients on both backends; best of a few rounds each."""
    events = 5_000 if quick else 30_000
    rounds = 2 if quick else 3
    best: dict[tuple[str, str], tuple[float, float]] = {}
    with CuratorProcess() as server:
        server.command(f"cluster {NODES}")
        for _ in range(rounds):
            for backend in BACKENDS:
                for name, client in (("trionodes", trionodes_stream), ("bare", bare_stream)):
                    wall, cpu = anyio.run(client, server, events, backend=backend)
                    key = (backend, name)
                    if key not in best or wall < best[key][0]:
                        best[key] = (wall, cpu)
    rows = []
    for backend in BACKENDS:
        ours, bare = best[(backend, "trionodes")], best[(backend, "bare")]
        rows.append(
            {
                "backend": backend,
                "events": events,
                "trionodes_us": ours[0] / events * 1e6,
                "bare_us": bare[0] / events * 1e6,
                "trionodes_cpu_us": ours[1] / events * 1e6,
                "bare_cpu_us": bare[1] / events * 1e6,
            }
        )
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    """The table: µs per event, and the ratios the goals are stated in."""
    lines = [
        f"end-to-end throughput, one-node events, {NODES:,}-node cluster (µs per event)",
        f"{'backend':>8} {'trionodes':>10} {'bare call':>10} {'ours/bare':>10}"
        f" {'cpu ours':>9} {'cpu bare':>9}",
    ]
    for row in rows:
        lines.append(
            f"{row['backend']:>8} {row['trionodes_us']:>10.1f} {row['bare_us']:>10.1f}"
            f" {row['trionodes_us'] / row['bare_us']:>9.2f}x"
            f" {row['trionodes_cpu_us']:>9.1f} {row['bare_cpu_us']:>9.1f}"
        )
    trio, asyncio_ = rows
    lines.append(
        f"trionodes Trio/asyncio, time per event: "
        f"{trio['trionodes_us'] / asyncio_['trionodes_us']:.2f}x"
        f"   bare Trio/asyncio: {trio['bare_us'] / asyncio_['bare_us']:.2f}x"
    )
    lines.append(
        f"trionodes events per second, Trio as a share of asyncio: "
        f"{asyncio_['trionodes_us'] / trio['trionodes_us']:.2f}x"
    )
    return "\n".join(lines)
