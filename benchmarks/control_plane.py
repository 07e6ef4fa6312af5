"""A multi-node control plane: leader moves, keepalive against strict servers, relist.

Against ``trionodes.testing.open_fake_cluster`` (real gRPC servers on loopback,
Metropolis-shaped TLS), on Trio:

* leader move: a 1,000-node cluster, a change made, the leadership moved; the time
  until ``watch_nodes``' follower holds the new cluster. Median and worst of 10.
  Leader moves are rare, so each comes after a healthy stream: the default
  :class:`RetryPolicy` but for ``reset_after``, shortened from 60 s to 1 s so that
  ten moves take seconds; its first backoff (0 to 0.5 s) is most of the figure.
* keepalive: a quiet cluster whose server enforces gRPC's default ping policy (one
  ping per 5 minutes without data, 2 strikes), against ``open_cluster``'s default
  10 s pings. Run at 1/100 scale (3 s policy, 0.1 s pings, 36 s for an hour), the
  figure is reconnects in that hour, and in the hour after.
* relist: a 10,000-node cluster where nothing changed: the Trio thread's CPU time
  per relist (fresh stream, backlog compared byte for byte, nothing delivered),
  against the initial sync of the same cluster.
"""

from __future__ import annotations

import statistics
import time
from functools import partial
from typing import Any

import trio

import trionodes
from trionodes._transport.server import PingPolicy
from trionodes.testing import make_node, open_fake_cluster

MOVE_NODES = 1_000
MOVES = 10
RELIST_NODES = 10_000
SCALE = 100  # the keepalive run's time scale: 1 s here is 100 s
# The default retry policy, but a stream counts as healthy after 1 s, not 60 s.
_HEALTHY_AFTER = trionodes.RetryPolicy(reset_after=1.0)


class _View(trionodes.Follower):
    """Keeps the view and nothing else."""

    def __init__(self) -> None:
        self.nodes: dict[str, trionodes.Node] = {}
        self.batch_done_event = trio.Event()

    def new(self, node: trionodes.Node) -> None:
        self.nodes[node.id] = node

    def updated(self, prev: trionodes.Node, node: trionodes.Node) -> None:
        self.nodes[node.id] = node

    def deleted(self, prev: trionodes.Node) -> None:
        del self.nodes[prev.id]

    def batch_done(self) -> None:
        self.batch_done_event.set()
        self.batch_done_event = trio.Event()


async def leader_moves() -> list[float]:
    """Seconds from each leader move to a follower holding the new cluster."""
    times = []
    async with open_fake_cluster(3) as cluster:
        cluster.put(*(make_node(i) for i in range(MOVE_NODES)))
        view = _View()
        async with (
            trionodes.open_cluster(cluster.endpoints, credentials=cluster.credentials) as curator,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(partial(trionodes.watch_nodes, retry=_HEALTHY_AFTER), curator, view)
            for move in range(MOVES):
                # Healthy for longer than reset_after: the backoff starts over.
                await trio.sleep(_HEALTHY_AFTER.reset_after * 1.5)
                cluster.put(make_node(move, address=f"10.99.0.{move}"))
                started = time.perf_counter()
                await cluster.move_leader()
                while view.nodes != dict(cluster.nodes):
                    await view.batch_done_event.wait()
                times.append(time.perf_counter() - started)
            nursery.cancel_scope.cancel()
    return times


async def keepalive_reconnects() -> tuple[int, int]:
    """Reconnects in the first scaled hour and in the next, on a quiet cluster."""
    strict = PingPolicy(min_interval=300.0 / SCALE, max_strikes=2)
    hour = 3600.0 / SCALE
    async with open_fake_cluster(1, tls=False, keepalive_policy=strict) as cluster:
        cluster.put(make_node(1))
        async with (
            trionodes.open_cluster(
                cluster.endpoints, keepalive=10.0 / SCALE, keepalive_timeout=5.0 / SCALE
            ) as curator,
            trionodes.open_node_watch(curator) as watch,
        ):
            await watch.wait_synced()
            await trio.sleep(hour)
            first = watch.stats.reconnects
            await trio.sleep(hour)
            return first, watch.stats.reconnects - first


async def relist_cost() -> dict[str, float]:
    """CPU seconds of the Trio thread (the client's splitting, comparing and diffing):
    for the initial sync, and per relist that finds nothing new (several, averaged).

    The fake's server and the gRPC client run on other threads, so their CPU is left
    out; the wall time of a relist is mostly the server encoding its backlog.
    """
    relists = 5
    async with open_fake_cluster(1, tls=False) as cluster:
        cluster.put(*(make_node(i) for i in range(RELIST_NODES)))
        async with trionodes.open_cluster(cluster.endpoints) as curator:
            started = time.thread_time()
            async with trionodes.open_node_watch(curator, relist=0.5) as watch:
                await watch.wait_synced()
                sync_cpu = time.thread_time() - started
                started = time.thread_time()
                while watch.stats.relists < relists or not watch.stats.synced:  # noqa: ASYNC110
                    await trio.sleep(0.01)  # (counters only, nothing to wait on)
                relist_cpu = (time.thread_time() - started) / watch.stats.relists
    return {"sync_cpu_s": sync_cpu, "relist_cpu_s": relist_cpu}


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure all three."""
    moves = trio.run(leader_moves)
    first_hour, second_hour = (0, 0) if quick else trio.run(keepalive_reconnects)
    relist = trio.run(relist_cost)
    return [
        {
            "leader_move_median_s": statistics.median(moves),
            "leader_move_worst_s": max(moves),
            "keepalive_reconnects_first_hour": first_hour,
            "keepalive_reconnects_second_hour": second_hour,
            **relist,
        }
    ]


def report(rows: list[dict[str, Any]]) -> str:
    """The figures."""
    (row,) = rows
    return "\n".join(
        [
            "control plane (fake cluster, real gRPC on loopback)",
            f"  leader move to converged view, {MOVE_NODES:,} nodes, {MOVES} moves: "
            f"median {row['leader_move_median_s']:.3f} s, worst {row['leader_move_worst_s']:.3f} s",
            f"  reconnects against gRPC's default ping policy (10 s pings, quiet cluster): "
            f"{row['keepalive_reconnects_first_hour']} in the first hour, "
            f"{row['keepalive_reconnects_second_hour']} in the second",
            f"  {RELIST_NODES:,} nodes, Trio thread CPU: initial sync "
            f"{row['sync_cpu_s']:.3f} s; a relist finding nothing new "
            f"{row['relist_cpu_s']:.3f} s",
        ]
    )
