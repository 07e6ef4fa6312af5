"""Soak run: a large changing cluster, many followers, random faults, for minutes.

Run it with ``nox -s soak`` (arguments after ``--`` are passed on) or
``python -m tests.soak --duration 180``. Not part of the test suite: it takes
minutes, and its figures are for reading.

A fake Curator holds a cluster of thousands of nodes under steady churn. Followers
of every kind watch it through three connections: ``watch_nodes`` with a
:class:`Follower` and with a :class:`SimpleFollower`, ``open_node_changes`` read
by a slow consumer, one ``open_node_watch`` shared by three ``follow`` calls (one
with its own ``equals``), and ``watch_node`` on a few nodes (replaced as churn
deletes them). Meanwhile faults from the fake's controls hit at random. At the
end faults and churn stop and every follower's view must equal the cluster
exactly (no lost node, no ghost, no stale state); no task, socket or file
descriptor may be left once the followers and connections are closed; and memory
must not grow over the run. Exits 1 if anything fails.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import gc
import logging
import os
import random
import statistics
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio
import trio.testing

import trionodes
from trionodes import BatchKind, Node, NodeState, StatusCode
from trionodes.testing import (
    FakeCurator,
    encode_watch_event,
    make_node,
    open_fake_curator,
    run_churn,
    settle,
)

from .watch.test_cleanup import established_connections, task_count

# Faults are found and recovered from quickly, so that many fit in a run. As with the
# defaults (30 s against 60 s), keepalive finds a dead connection well before a
# backlog is given up as stalled.
KEEPALIVE = 1.0
KEEPALIVE_TIMEOUT = 1.0
BACKLOG_TIMEOUT = 2 * (KEEPALIVE + KEEPALIVE_TIMEOUT)
RETRY = trionodes.RetryPolicy(
    initial_delay=0.05, max_delay=0.5, reset_after=5.0, backlog_timeout=BACKLOG_TIMEOUT
)
# Backlog events of about 64 KiB: a backlog of thousands of nodes spans many events.
BACKLOG_MESSAGE_BYTES = 64 * 1024
# Over the client's 4 MiB limit.
OVERSIZE_BYTES = 5 * 1024 * 1024
NODE_WATCHERS = 6
# How long the followers get to converge once faults and churn stop.
CONVERGE_TIMEOUT = 60.0
MEMORY_SAMPLE_INTERVAL = 5.0
# Memory is flat when the last third of the samples is, in median, within this of
# the first third: allocator noise and a cluster that wanders in size stay inside.
RSS_SLACK = 1.25
RSS_SLACK_BYTES = 16 * 2**20
BLOCKS_SLACK = 1.15


# Followers.


@dataclasses.dataclass
class Mirror(trionodes.Follower):
    """A :class:`trionodes.Follower` that keeps its view and checks every call against it."""

    admit: Callable[[Node], bool] = lambda node: True
    same: Callable[[Node, Node], bool] = lambda a, b: a == b
    view: dict[str, Node] = dataclasses.field(default_factory=dict)
    violations: list[str] = dataclasses.field(default_factory=list)
    kinds: collections.Counter[BatchKind] = dataclasses.field(default_factory=collections.Counter)

    def filter(self, node: Node) -> bool:
        return self.admit(node)

    def equals(self, a: Node, b: Node) -> bool:
        return self.same(a, b)

    def new(self, node: Node) -> None:
        if node.id in self.view:
            self.violations.append(f"new for {node.id}, already in the view")
        self.view[node.id] = node

    def updated(self, prev: Node, node: Node) -> None:
        if self.view.get(node.id) is not prev:
            self.violations.append(f"updated for {node.id} with a prev not in the view")
        if self.same(prev, node):
            self.violations.append(f"updated for {node.id} with an equal state")
        self.view[node.id] = node

    def deleted(self, prev: Node) -> None:
        if self.view.get(prev.id) is not prev:
            self.violations.append(f"deleted for {prev.id} with a prev not in the view")
        self.view.pop(prev.id, None)

    def batch_started(self, kind: BatchKind) -> None:
        self.kinds[kind] += 1

    def batch_done(self) -> None:
        pass


@dataclasses.dataclass
class Followed:
    """One follower under test: its view, and the view it should end with."""

    name: str
    view: Callable[[], Mapping[str, Node]]
    admit: Callable[[Node], bool] = lambda node: True
    same: Callable[[Node, Node], bool] = lambda a, b: a == b
    violations: list[str] = dataclasses.field(default_factory=list)
    error: BaseException | None = None

    def differences(self, cluster: Mapping[str, Node]) -> str | None:
        """What is wrong with the view, or None if it matches ``cluster``."""
        expected = {node_id: node for node_id, node in cluster.items() if self.admit(node)}
        view = self.view()
        lost = expected.keys() - view.keys()
        ghosts = view.keys() - expected.keys()
        stale = [i for i in expected.keys() & view.keys() if not self.same(view[i], expected[i])]
        if not (lost or ghosts or stale):
            return None
        return f"{len(lost)} lost, {len(ghosts)} ghosts, {len(stale)} stale"


def up(node: Node) -> bool:
    return node.state is NodeState.UP


def zone_0(node: Node) -> bool:
    return node.labels is not None and any(
        pair.key == "zone" and pair.value == "z0" for pair in node.labels.pairs
    )


def controller(node: Node) -> bool:
    return node.roles is not None and node.roles.kubernetes_controller is not None


def same_but_address(a: Node, b: Node) -> bool:
    """Equal but for the external address: a follower that ignores address changes."""
    return a.state == b.state and a.roles == b.roles and a.labels == b.labels


async def guarded(followed: Followed, run: Callable[[], Awaitable[object]]) -> None:
    """Run a follower; a failure is recorded for the final check, not raised."""
    try:
        await run()
    except Exception as exc:
        followed.error = exc


class NodeWatchers:
    """``watch_node`` on a few nodes; a watcher whose node is deleted is replaced."""

    def __init__(self, curator: trionodes.Curator, fake: FakeCurator, rng: random.Random) -> None:
        self._curator = curator
        self._fake = fake
        self._rng = rng
        self.live: dict[str, trionodes.NodeWatch] = {}
        self.ended = 0
        self.reconnects = 0
        self.violations: list[str] = []
        self.errors: list[BaseException] = []

    async def run(self, count: int) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(self._watch_one)

    async def _watch_one(self) -> None:
        while True:
            node_id = self._rng.choice(sorted(self._fake.nodes))
            if node_id in self.live:
                continue
            try:
                async with trionodes.watch_node(self._curator, node_id, retry=RETRY) as watcher:
                    self.live[node_id] = watcher
                    try:
                        async for node in watcher:
                            if node.id != node_id:
                                self.violations.append(f"watch_node({node_id}) yielded {node.id}")
                    finally:
                        del self.live[node_id]
                        self.reconnects += watcher.stats.reconnects
            except Exception as exc:
                self.errors.append(exc)
                return
            # Ids are never reused: a deleted node stays deleted.
            if not watcher.deleted or node_id in self._fake.nodes:
                self.violations.append(f"watch_node({node_id}) ended, but the node exists")
            self.ended += 1

    def differences(self) -> str | None:
        wrong = [
            node_id
            for node_id, watcher in self.live.items()
            if watcher.node != self._fake.nodes.get(node_id)
        ]
        return f"{len(wrong)} of {len(self.live)} wrong" if wrong else None


async def consume_changes(
    curator: trionodes.Curator, mirror: Mirror, rng: random.Random, batches: list[int]
) -> None:
    """A slow consumer of ``open_node_changes``: it applies each batch to its view."""
    async with trionodes.open_node_changes(curator, mirror.admit, retry=RETRY) as changes:
        async for batch in changes:
            mirror.batch_started(batch.kind)
            for node in batch.new:
                mirror.new(node)
            for prev, node in batch.updated:
                mirror.updated(prev, node)
            for node in batch.deleted:
                mirror.deleted(node)
            if mirror.view != dict(batch.view):
                mirror.violations.append("the batch's view differs from the view it built")
            batches[0] += 1
            await trio.sleep(rng.uniform(0, 0.2))


# Faults.


def nameless_node() -> Node:
    node = make_node(1)
    node.id = ""
    return node


def harmless_hostile_event(fake: FakeCurator, rng: random.Random, ghost: int) -> bytes:
    """An event a Curator never sends, whose defined outcome leaves the view right."""
    node_id = rng.choice(sorted(fake.nodes))
    current = bytes(fake.nodes[node_id])
    stale = dataclasses.replace(fake.nodes[node_id], state=NodeState.DECOMMISSIONED)
    ghost_node = make_node(10**9 + ghost)
    ghost_node.id = f"soak-ghost-{ghost}"
    variant = rng.randrange(4)
    if variant == 0:  # duplicate ids: the last one wins
        return encode_watch_event([bytes(stale), current])
    if variant == 1:  # a node and its tombstone: it came and went
        return encode_watch_event([bytes(ghost_node)], [ghost_node.id])
    if variant == 2:  # tombstones for unknown nodes: ignored
        return encode_watch_event([], [ghost_node.id, "no-such-node"])
    return encode_watch_event([current], last_backlogged=True)  # a second LAST_BACKLOGGED


class Faults:
    """Injects one random fault after another, each healed before the next."""

    KINDS = (
        "status",
        "garbage",
        "garbage to node calls",
        "node without id",
        "harmless hostile event",
        "oversize message",
        "stall",
        "stall mid-backlog",
        "freeze",
        "partition",
        "drop connections",
        "refuse connections",
        "restart",
    )

    def __init__(self, fake: FakeCurator, watchers: NodeWatchers, rng: random.Random) -> None:
        self._fake = fake
        self._watchers = watchers
        self._rng = rng
        self.injected: collections.Counter[str] = collections.Counter()

    async def run(self) -> None:
        rng = self._rng
        while True:
            await trio.sleep(rng.uniform(0.5, 3.0))
            kind = rng.choice(self.KINDS)
            self.injected[kind] += 1
            try:
                await self._inject(kind)
            finally:
                with trio.CancelScope(shield=True):
                    await self.heal()

    async def heal(self) -> None:
        fake = self._fake
        fake.resume()
        fake.thaw()
        if not fake.listening:
            await fake.accept_connections()

    async def _hold(self, longest: float = 4.0) -> None:
        await trio.sleep(self._rng.uniform(0.2, longest))

    async def _inject(self, kind: str) -> None:
        fake, rng = self._fake, self._rng
        if kind == "status":
            status = rng.choice([StatusCode.UNAVAILABLE, StatusCode.INTERNAL, StatusCode.ABORTED])
            fake.fail_streams(status, "soak")
        elif kind == "garbage":
            fake.send_raw(rng.randbytes(rng.randrange(1, 64)) + b"\xff")
        elif kind == "garbage to node calls":
            for node_id in list(self._watchers.live):
                fake.send_raw(b"\x0a\xff\xff", node_id=node_id)
        elif kind == "node without id":
            fake.send_raw(encode_watch_event([bytes(nameless_node())]))
        elif kind == "harmless hostile event":
            fake.send_raw(harmless_hostile_event(fake, rng, sum(self.injected.values())))
        elif kind == "oversize message":
            node = bytes(fake.nodes[rng.choice(sorted(fake.nodes))])
            fake.send_raw(encode_watch_event([node] * (OVERSIZE_BYTES // len(node) + 1)))
        elif kind == "stall":
            fake.stall()
            await self._hold()
        elif kind == "stall mid-backlog":
            # Calls opened meanwhile stop after a few backlog events, and time out.
            fake.stall(after_messages=rng.randrange(1, 4))
            fake.fail_streams(StatusCode.UNAVAILABLE, "soak: reconnect into a stall")
            await self._hold(longest=2 * BACKLOG_TIMEOUT)
        elif kind == "freeze":
            fake.freeze(new_connections=False)
            await self._hold()
        elif kind == "partition":
            # Long enough, at times, for several reconnects in a row to hang until
            # keepalive gives up on them.
            fake.freeze(new_connections=True)
            await self._hold(longest=6 * (KEEPALIVE + KEEPALIVE_TIMEOUT))
        elif kind == "drop connections":
            fake.drop_connections()
        elif kind == "refuse connections":
            await fake.refuse_connections()
            await self._hold()
        elif kind == "restart":
            await fake.restart()
        else:
            raise AssertionError(kind)


# Measurements.


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclasses.dataclass
class Memory:
    rss: list[int] = dataclasses.field(default_factory=list)
    blocks: list[int] = dataclasses.field(default_factory=list)

    async def sample_every(self, interval: float) -> None:
        while True:
            gc.collect()
            self.rss.append(rss_bytes())
            self.blocks.append(sys.getallocatedblocks())
            await trio.sleep(interval)

    def flat(self) -> bool:
        third = max(1, len(self.rss) // 3)
        if len(self.rss) < 3:
            return True
        rss_first = statistics.median(self.rss[:third])
        rss_last = statistics.median(self.rss[-third:])
        blocks_first = statistics.median(self.blocks[:third])
        blocks_last = statistics.median(self.blocks[-third:])
        return (
            rss_last <= rss_first * RSS_SLACK + RSS_SLACK_BYTES
            and blocks_last <= blocks_first * BLOCKS_SLACK
        )


class LogCounter(logging.Handler):
    """Counts what the watches log, by level."""

    def __init__(self, verbose: bool) -> None:
        super().__init__(logging.DEBUG)
        self.counts: collections.Counter[str] = collections.Counter()
        self.verbose = verbose

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] += 1
        if self.verbose:
            print(f"  log {record.levelname}: {record.getMessage()}", flush=True)


# The run.


async def poll(condition: Callable[[], bool], seconds: float) -> bool:
    """Wait until ``condition()`` holds; False if it did not within ``seconds``."""
    with trio.move_on_after(seconds):
        # Polled: the state spans the client, the server and the network between.
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.05)
        return True
    return False


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


async def soak(args: argparse.Namespace) -> bool:
    rng = random.Random(args.seed)
    log = LogCounter(args.verbose)
    logger = logging.getLogger("trionodes")
    logger.addHandler(log)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    fds_before_fake = open_fds()
    failures: list[str] = []
    report: dict[str, Any] = {}

    async with open_fake_curator(
        max_message_bytes=BACKLOG_MESSAGE_BYTES, shuffle_seed=args.seed
    ) as fake:
        fake.put(
            *(
                make_node(i, controller=i % 50 == 0, curator_port=7835 if i % 50 == 0 else None)
                for i in range(1, args.nodes + 1)
            )
        )
        await settle()
        tasks_before, fds_before = task_count(), open_fds()
        print(
            f"soak: {args.nodes} nodes, {args.churn:g} changes/s, {args.duration:g} s, "
            f"seed {args.seed}, fake on port {fake.port}",
            flush=True,
        )

        def connect() -> Any:
            return trionodes.open_curator(
                fake.host, fake.port, keepalive=KEEPALIVE, keepalive_timeout=KEEPALIVE_TIMEOUT
            )

        all_mirror = Mirror()
        simple_view: dict[str, Node] = {}
        changes_mirror = Mirror(admit=zone_0)
        changes_batches = [0]
        shared = [Mirror(), Mirror(admit=controller), Mirror(same=same_but_address)]
        shared_watch: list[trionodes.ClusterWatch] = []
        followed = [
            Followed("watch_nodes, Follower, every node", lambda: all_mirror.view),
            Followed("watch_nodes, SimpleFollower, UP nodes", lambda: simple_view, admit=up),
            Followed("open_node_changes, zone z0, slow", lambda: changes_mirror.view, zone_0),
            Followed("shared watch, follow, every node", lambda: shared[0].view),
            Followed("shared watch, follow, controllers", lambda: shared[1].view, controller),
            Followed(
                "shared watch, follow, equals ignores address",
                lambda: shared[2].view,
                same=same_but_address,
            ),
            Followed("shared watch, its nodes", lambda: shared_watch[0].nodes),
        ]
        memory = Memory()

        async with connect() as curator_a, connect() as curator_b, connect() as curator_c:
            watchers = NodeWatchers(curator_c, fake, rng)
            faults = Faults(fake, watchers, rng)
            async with trio.open_nursery() as followers:

                def simple_put(node: Node) -> None:
                    simple_view[node.id] = node

                def simple_delete(node: Node) -> None:
                    del simple_view[node.id]

                simple = trionodes.SimpleFollower(
                    filter_fn=up, on_new_updated=simple_put, on_deleted=simple_delete
                )

                async def shared_followers() -> None:
                    async with (
                        trionodes.open_node_watch(curator_b, retry=RETRY) as watch,
                        trio.open_nursery() as nursery,
                    ):
                        shared_watch.append(watch)
                        for mirror, one in zip(shared, followed[3:6], strict=True):
                            nursery.start_soon(
                                guarded, one, functools.partial(watch.follow, mirror)
                            )
                        await trio.sleep_forever()

                followers.start_soon(
                    guarded,
                    followed[0],
                    lambda: trionodes.watch_nodes(curator_a, all_mirror, retry=RETRY),
                )
                followers.start_soon(
                    guarded,
                    followed[1],
                    lambda: trionodes.watch_nodes(curator_a, simple, retry=RETRY),
                )
                followers.start_soon(
                    guarded,
                    followed[2],
                    lambda: consume_changes(curator_b, changes_mirror, rng, changes_batches),
                )
                followers.start_soon(guarded, followed[6], shared_followers)
                followers.start_soon(watchers.run, NODE_WATCHERS)

                # Everyone synced before the clock starts.
                if not await poll(
                    lambda: (
                        bool(shared_watch) and not any(f.differences(fake.nodes) for f in followed)
                    ),
                    CONVERGE_TIMEOUT,
                ):
                    raise RuntimeError("the followers did not sync in time")
                print("soak: every follower synced; churn and faults start", flush=True)

                start = trio.current_time()
                async with trio.open_nursery() as chaos:
                    chaos.start_soon(memory.sample_every, MEMORY_SAMPLE_INTERVAL)
                    chaos.start_soon(
                        lambda: run_churn(
                            fake,
                            changes_per_second=args.churn,
                            target_nodes=args.nodes,
                            seed=args.seed,
                        )
                    )
                    chaos.start_soon(faults.run)
                    while trio.current_time() - start < args.duration:
                        await trio.sleep(min(10.0, args.duration))
                        print(
                            f"  {trio.current_time() - start:5.0f} s: "
                            f"{sum(faults.injected.values())} faults, "
                            f"{len(fake.nodes)} nodes, "
                            f"shared watch reconnects {shared_watch[0].stats.reconnects}, "
                            f"RSS {mib(rss_bytes())}",
                            flush=True,
                        )
                    chaos.cancel_scope.cancel()
                await faults.heal()
                memory.rss.append(rss_bytes())
                memory.blocks.append(sys.getallocatedblocks())

                # Converge.
                converge_start = trio.current_time()
                await poll(
                    lambda: (
                        not any(f.differences(fake.nodes) for f in followed)
                        and watchers.differences() is None
                    ),
                    CONVERGE_TIMEOUT,
                )
                report["converged in"] = f"{trio.current_time() - converge_start:.1f} s"
                for one in followed:
                    problem = one.differences(fake.nodes)
                    status = "OK" if problem is None and one.error is None else "FAIL"
                    if one.error is not None:
                        problem = f"ended with {one.error!r}"
                    print(f"  final: {status:4} {one.name}: {problem or 'equals the cluster'}")
                    if status != "OK":
                        failures.append(f"{one.name}: {problem}")
                problem = watchers.differences()
                print(
                    f"  final: {'OK' if problem is None else 'FAIL':4} watch_node on "
                    f"{len(watchers.live)} nodes ({watchers.ended} ended by deletion): "
                    f"{problem or 'each equals its node'}"
                )
                if problem is not None:
                    failures.append(f"watch_node: {problem}")
                for name, violations in (
                    ("watch_nodes Follower", all_mirror.violations),
                    ("open_node_changes", changes_mirror.violations),
                    *((f"shared follower {i}", m.violations) for i, m in enumerate(shared)),
                    ("watch_node", watchers.violations),
                ):
                    if violations:
                        failures.append(
                            f"{name}: {len(violations)} bad calls, e.g. {violations[0]}"
                        )
                failures += [f"watch_node ended with {e!r}" for e in watchers.errors]

                stats = shared_watch[0].stats
                report["shared watch"] = (
                    f"{stats.reconnects} reconnects, {stats.events_received} events, "
                    f"{stats.batches_delivered} batches, last error: {stats.last_error}"
                )
                report["batches by kind (shared, every node)"] = dict(shared[0].kinds)
                report["open_node_changes batches"] = changes_batches[0]
                report["watch_node reconnects (all watchers)"] = watchers.reconnects + sum(
                    w.stats.reconnects for w in watchers.live.values()
                )
                report["failures logged (all watches)"] = dict(log.counts)
                followers.cancel_scope.cancel()

        # Leaks: everything the followers and connections used is gone.
        await poll(lambda: not fake.open_connections and not established_connections(fake.port), 10)
        await settle()
        leaks = {
            "tasks": task_count() - tasks_before,
            "fds": open_fds() - fds_before,
            "TCP connections": established_connections(fake.port),
            "server connections": fake.open_connections,
            "calls": fake.active_streams,
        }
        report["fake"] = (
            f"{fake.connections_accepted} connections accepted, {fake.streams_opened} calls, "
            f"{fake.streams_dropped} dropped, {fake.streams_cancelled} cancelled"
        )
    leaks["fds after the fake"] = open_fds() - fds_before_fake
    failures += [f"leaked {n} {what}" for what, n in leaks.items() if n]

    print("soak summary")
    print(f"  faults injected: {sum(faults.injected.values())}")
    for kind in Faults.KINDS:
        print(f"    {kind}: {faults.injected[kind]}")
    for key, value in report.items():
        print(f"  {key}: {value}")
    print(
        f"  memory: RSS first {mib(memory.rss[0])}, last {mib(memory.rss[-1])}, "
        f"max {mib(max(memory.rss))}; allocated blocks first {memory.blocks[0]}, "
        f"last {memory.blocks[-1]} ({len(memory.rss)} samples)"
    )
    print(f"  RSS samples (MiB): {' '.join(f'{n / 2**20:.0f}' for n in memory.rss)}")
    print(f"  allocated blocks samples (k): {' '.join(f'{n // 1000}' for n in memory.blocks)}")
    if not memory.flat():
        failures.append("memory grew")
    print(f"  leaks: {leaks}")
    for failure in failures:
        print(f"  FAILED: {failure}")
    print("soak: " + ("FAILED" if failures else "passed"))
    return not failures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of faults (180)")
    parser.add_argument("--nodes", type=int, default=3000, help="cluster size (3000)")
    parser.add_argument("--churn", type=float, default=50.0, help="changes per second (50)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (random)")
    parser.add_argument("--verbose", action="store_true", help="print every log line")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.randrange(2**32)
    sys.exit(0 if trio.run(soak, args) else 1)


if __name__ == "__main__":
    main()
