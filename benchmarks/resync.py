"""Resync: reconnecting to a 100,000-node cluster where 1% of the nodes changed.

A reconnect gets a whole new backlog. trionodes compares each node's bytes with the
bytes it holds and decodes only those that differ, so a resync should cost a small
part of the initial sync. Two measurements, each against the initial sync of the
same cluster in the same run:

* engine: the pure engine alone (split every backlog event, decode what
  :meth:`Cluster.to_decode` lists, apply), for the initial backlog on a new
  :class:`Cluster`, then after :meth:`Cluster.restart` for the changed one;
* end to end on Trio, against the benchmark Curator (another process): the first
  batch of ``open_node_changes``, timed from connecting; then the Curator ends the
  call with ``UNAVAILABLE`` and the watch reconnects on its own (after at most a
  millisecond of backoff) and delivers the resync batch, timed from the failure.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import anyio

import trionodes
from trionodes import BatchKind, RetryPolicy
from trionodes._core.engine import Cluster, ClusterDelta, decode_nodes
from trionodes._core.wire import split_watch_event

from . import cluster
from .server import CuratorProcess

NODES = 100_000
CHANGED = NODES // 100


def changed_generations() -> list[int]:
    """The generations after the server's ``change`` command (the same spread)."""
    generations = [0] * NODES
    for index in range(0, NODES, NODES // CHANGED)[:CHANGED]:
        generations[index] = 1
    return generations


def _apply_backlog(state: Cluster, events: list[bytes]) -> ClusterDelta:
    for message in events:
        event = split_watch_event(message)
        delta = state.apply(event, decode_nodes(state.to_decode(event)))
    assert delta is not None
    return delta


def engine_times() -> tuple[float, float]:
    """Seconds for the initial backlog, then for the resync after 1% changed."""
    first = cluster.backlog_events([0] * NODES)
    second = cluster.backlog_events(changed_generations())
    state = Cluster()
    gc.collect()
    started = time.perf_counter()
    delta = _apply_backlog(state, first)
    initial = time.perf_counter() - started
    assert delta.kind is BatchKind.INITIAL
    assert len(delta.changed) == NODES
    state.restart()
    gc.collect()
    started = time.perf_counter()
    delta = _apply_backlog(state, second)
    resync = time.perf_counter() - started
    assert delta.kind is BatchKind.RESYNC
    assert len(delta.changed) == CHANGED
    return initial, resync


async def end_to_end_times(server: CuratorProcess) -> tuple[float, float]:
    """Seconds to the first batch, then from the failure to the resync batch."""
    retry = RetryPolicy(initial_delay=0.001)
    started = time.perf_counter()
    async with (
        trionodes.open_curator("127.0.0.1", server.port) as curator,
        trionodes.open_node_changes(curator, retry=retry) as changes,
    ):
        batch = await changes.receive()
        initial = time.perf_counter() - started
        assert batch.kind is BatchKind.INITIAL
        assert len(batch.new) == NODES
        server.command(f"change {CHANGED}")
        started = time.perf_counter()
        server.command("fail")
        batch = await changes.receive()
        resync = time.perf_counter() - started
        assert batch.kind is BatchKind.RESYNC
        assert len(batch.updated) == CHANGED
    return initial, resync


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure both ways; the end-to-end one is repeated on a fresh cluster."""
    rounds = 1 if quick else 2
    rows = []
    times = [engine_times() for _ in range(rounds)]
    rows.append(
        {
            "level": "engine",
            "initial_s": min(t[0] for t in times),
            "resync_s": min(t[1] for t in times),
        }
    )
    times = []
    with CuratorProcess() as server:
        for _ in range(rounds):
            server.command(f"cluster {NODES}")
            times.append(anyio.run(end_to_end_times, server, backend="trio"))
    rows.append(
        {
            "level": "end to end",
            "initial_s": min(t[0] for t in times),
            "resync_s": min(t[1] for t in times),
        }
    )
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    """The table: seconds, and the ratio the goal is stated in."""
    lines = [
        f"resync of a {NODES:,}-node cluster where {CHANGED:,} nodes changed (seconds)",
        f"{'level':>10} {'initial':>8} {'resync':>8} {'initial/resync':>14}",
    ]
    for row in rows:
        lines.append(
            f"{row['level']:>10} {row['initial_s']:>8.2f} {row['resync_s']:>8.3f}"
            f" {row['initial_s'] / row['resync_s']:>13.1f}x"
        )
    return "\n".join(lines)
