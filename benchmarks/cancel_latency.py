"""Cancel latency: from ``cancel()`` to the watch's block having exited, anywhere.

Another task cancels the client's cancel scope at a random point of a window, and
the figure is the time from that ``cancel()`` call to the end of the ``finally``
around the client's block (for trionodes, ``open_curator`` and ``open_node_changes``
together; for the baseline, its grpc.aio call and channel, closed under a shield).
Two windows, on a fresh cluster for every point:

* sync: from just before connecting until the first batch;
* resync where every node changed: after the sync, the Curator's ``change``
  command moves every node to its next generation and ``fail`` ends the call; the
  window runs from the failure until the ``RESYNC`` batch, so it takes in the new
  backlog, its commit and the diff of every node (``open_node_changes``' default
  ``equals``). The baseline's resync is a new call into a fresh dict, then a diff.

Each window is timed once uncancelled, then cut into as many equal parts as there
are points, and each point falls at random within its part (a point landing after
the block ended is dropped, counted, and drawn again, up to three times). A task
can only call ``cancel()`` when the event loop lets it run, so ``cancel()`` itself
may come late after a long step; the report therefore also gives the time from when
the cancel was due (the canceller's deadline) to the block's exit, which is what a
``move_on_after`` would see.

trionodes runs on Trio, the baseline on asyncio (both through anyio cancel scopes).
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

import trionodes
from trionodes import BatchKind, RetryPolicy

from . import figures, grpcio_client
from .server import CuratorProcess

WINDOWS = ("sync", "resync")
# A body is told where its window starts (set the event) and notes when it exited.
Body = Callable[[CuratorProcess, int, anyio.Event, list[float]], Awaitable[None]]


@dataclass(frozen=True)
class Config:
    """How big and how many.

    Attributes:
        nodes: The cluster size.
        points: Cancel points per window and client.
    """

    nodes: int
    points: int


FULL = Config(100_000, 5)
QUICK = Config(5_000, 3)
_RETRY = RetryPolicy(initial_delay=0.001)


async def _fail(server: CuratorProcess, nodes: int) -> None:
    """Every node changes, then the Curator ends the call."""
    server.command(f"change {nodes}")
    await anyio.to_thread.run_sync(server.command, "fail")


async def trionodes_sync(
    server: CuratorProcess, nodes: int, started: anyio.Event, exited: list[float]
) -> None:
    """Connect and take the first batch."""
    started.set()
    try:
        async with (
            trionodes.open_curator("127.0.0.1", server.port) as curator,
            trionodes.open_node_changes(curator) as changes,
        ):
            assert len((await changes.receive()).new) == nodes
    finally:
        exited.append(time.perf_counter())


async def trionodes_resync(
    server: CuratorProcess, nodes: int, started: anyio.Event, exited: list[float]
) -> None:
    """Sync, have every node changed and the call failed, take the resync batch."""
    try:
        async with (
            trionodes.open_curator("127.0.0.1", server.port) as curator,
            trionodes.open_node_changes(curator, retry=_RETRY) as changes,
        ):
            await changes.receive()
            await _fail(server, nodes)
            started.set()
            batch = await changes.receive()
            assert batch.kind is BatchKind.RESYNC
            assert len(batch.updated) == nodes
    finally:
        exited.append(time.perf_counter())


async def _close(watch: grpcio_client.Watch | None) -> None:
    if watch is not None:
        with anyio.CancelScope(shield=True):
            await watch.close()


async def baseline_sync(
    server: CuratorProcess, nodes: int, started: anyio.Event, exited: list[float]
) -> None:
    """The hand-written client: open the call, read the backlog."""
    started.set()
    watch = None
    try:
        watch = grpcio_client.open_watch(server.port)
        await watch.sync()
        assert len(watch.nodes) == nodes
    finally:
        await _close(watch)
        exited.append(time.perf_counter())


async def baseline_resync(
    server: CuratorProcess, nodes: int, started: anyio.Event, exited: list[float]
) -> None:
    """The hand-written client: sync, then a new call into a fresh dict, and a diff."""
    watch = None
    try:
        watch = grpcio_client.open_watch(server.port)
        await watch.sync()
        await _fail(server, nodes)
        started.set()
        # Closing the old watch closes the channel the new call shares.
        _, changed, _ = await grpcio_client.resync(watch)
        assert len(changed) == nodes
    finally:
        await _close(watch)
        exited.append(time.perf_counter())


async def window_length(body: Body, server: CuratorProcess, nodes: int) -> float:
    """Seconds from the start of ``body``'s window to its exit, uncancelled."""
    started = anyio.Event()
    exited: list[float] = []
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(body, server, nodes, started, exited)
        await started.wait()
        opened = time.perf_counter()
    return exited[0] - opened


async def cancel_at(
    body: Body, server: CuratorProcess, nodes: int, delay: float
) -> tuple[float, float] | None:
    """Run ``body`` and cancel it ``delay`` seconds into its window.

    Returns:
        Seconds from ``cancel()`` to the exit, and from when the cancel was due to
        the exit; None when the body ended before the cancel.
    """
    scope = anyio.CancelScope()
    started = anyio.Event()
    exited: list[float] = []

    async def client() -> None:
        with scope:
            await body(server, nodes, started, exited)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(client)
        await started.wait()
        due = time.perf_counter() + delay
        await anyio.sleep(delay)
        if exited:
            return None
        cancelled = time.perf_counter()
        scope.cancel()
    return exited[0] - cancelled, exited[0] - due


# Each client's bodies and the backend it runs on.
CLIENTS: dict[str, tuple[str, dict[str, Body]]] = {
    "trionodes": ("trio", {"sync": trionodes_sync, "resync": trionodes_resync}),
    "baseline": ("asyncio", {"sync": baseline_sync, "resync": baseline_resync}),
}
# Points fall within this share of the uncancelled window, so that few land after
# the block has already ended.
_SPAN = 0.95
# Draws for a point before giving it up.
_TRIES = 3


def _measure(
    server: CuratorProcess, client: str, window: str, config: Config, rng: random.Random
) -> dict[str, Any]:
    backend, bodies = CLIENTS[client]
    body = bodies[window]
    server.command(f"cluster {config.nodes}")
    gc.collect()
    length = anyio.run(window_length, body, server, config.nodes, backend=backend)
    found: dict[str, Any] = {"window_s": length, "cancel": [], "due": [], "dropped": 0}
    for point in range(config.points):
        for _ in range(_TRIES):
            delay = (point + rng.random()) / config.points * length * _SPAN
            server.command(f"cluster {config.nodes}")
            gc.collect()
            got = anyio.run(cancel_at, body, server, config.nodes, delay, backend=backend)
            if got is not None:
                found["cancel"].append(got[0] * 1e3)
                found["due"].append(got[1] * 1e3)
                break
            found["dropped"] += 1
    return found


def run(quick: bool = False, config: Config | None = None) -> list[dict[str, Any]]:
    """Cancel each client at random points of each window."""
    config = config or (QUICK if quick else FULL)
    rng = random.Random(12)
    results: dict[tuple[str, str], dict[str, Any]] = {}
    with CuratorProcess() as server:
        # Imports, protobuf generation and first-use set-up stay out of the figures.
        server.command("cluster 100")
        for backend, bodies in CLIENTS.values():
            for body in bodies.values():
                anyio.run(window_length, body, server, 100, backend=backend)
        for window in WINDOWS:
            for client in CLIENTS:
                results[client, window] = _measure(server, client, window, config, rng)
    titles = {
        "sync": f"cancel during a {config.nodes:,}-node sync",
        "resync": f"cancel during a {config.nodes:,}-node resync, every node changed",
    }
    rows = []
    for window in WINDOWS:
        ours, theirs = results["trionodes", window], results["baseline", window]
        for key, since in (("cancel", "from cancel()"), ("due", "from when due")):
            rows.append(
                figures.row(
                    f"{titles[window]}, {since}",
                    "ms",
                    ours[key],
                    theirs[key],
                    "worst_max",
                    100.0,
                    "never over 100 ms",
                    nodes=config.nodes,
                    window_s={"trionodes": ours["window_s"], "baseline": theirs["window_s"]},
                    dropped={"trionodes": ours["dropped"], "baseline": theirs["dropped"]},
                )
            )
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    """The table: cancel latencies, trionodes on Trio against the baseline."""
    lines = [
        figures.table(
            "cancel latency: ms to the block's exit, median (lowest-highest) of the"
            " points; the goal is on the worst (trionodes on Trio, baseline on asyncio)",
            rows,
        )
    ]
    for entry in rows[::2]:
        window, dropped = entry["window_s"], entry["dropped"]
        lines.append(
            f"{entry['figure'].removesuffix(', from cancel()')}: uncancelled window"
            f" {window['trionodes']:.2f} s (baseline {window['baseline']:.2f} s);"
            f" points after the end, dropped: {dropped['trionodes']}"
            f" (baseline {dropped['baseline']})"
        )
    return "\n".join(lines)
