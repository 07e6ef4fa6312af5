"""The diff engine: pure state machines, fed with events, returning results.

Nothing here does I/O or imports an async library (a test enforces it): the code that
reads streams and runs followers wraps these classes.

Three pieces:

* :class:`Cluster` holds the cluster as one NodesInCluster stream reports it. It keeps
  every node's serialized bytes beside the decoded node, so a node whose bytes did
  not change is never decoded again, and a resync after a reconnect touches only what
  changed. Applying an event costs time in proportion to the nodes in the event.
* :class:`FollowerView` is one follower's filtered view. The cluster tells it which
  node ids changed; it remembers them (pending changes to one node collapse into
  one) until its follower is ready for a batch, then diffs only those ids.
* :class:`NodeTracker` follows one node id for NodeInCluster streams.

The two steps whose cost grows with the whole cluster, committing a backlog and
diffing a follower's pending changes, also come as generators
(:meth:`Cluster.apply_steps`, :meth:`FollowerView.take_batch_steps`) that do a
bounded amount of work per ``next``, so that an async caller can let other tasks
run, and a cancel through, between steps. Nothing is visible before the last step.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from .._errors import ProtocolError
from .._proto.metropolis.node.core.curator.proto.api import Node
from .decode import parse_node
from .frozenmap import FrozenMap
from .steps import Steps, run_steps
from .wire import RawEvent

NodeFilter = Callable[[Node], bool]
"""Says whether a node belongs in a follower's view."""

NodeEquals = Callable[[Node, Node], bool]
"""Says whether two states of a node are the same for a follower."""

COMMIT_CHUNK = 4096
"""Nodes a backlog commit handles per step (each about a microsecond: a dict write)."""

DIFF_CHUNK = 256
"""Nodes a follower's diff handles per step: ``equals`` on whole messages costs tens of
microseconds a node, so this keeps a step near 10 ms even then."""

SORT_RUN = 4096
"""Ids a diff sorts per step (a few milliseconds); the sorted runs are merged lazily."""


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def decode_node(data: bytes) -> Node:
    """Decode one serialized node: the same object as ``Node.parse``, several times sooner.

    Raises:
        ProtocolError: The bytes are not a valid ``Node``.
    """
    try:
        return parse_node(data)
    except ProtocolError as exc:
        raise ProtocolError(f"undecodable node ({len(data)} bytes): {exc}") from exc


def decode_nodes(pending: Iterable[bytes]) -> dict[bytes, Node]:
    """Decode serialized nodes, keyed by their bytes (see :meth:`Cluster.to_decode`).

    Raises:
        ProtocolError: One of them is not a valid ``Node``.
    """
    return {data: decode_node(data) for data in pending}


class BatchKind(enum.Enum):
    """Why a batch was delivered."""

    INITIAL = "initial"
    """The follower's first batch: the whole cluster as it was when it synced."""
    LIVE = "live"
    """Changes streamed one event at a time."""
    RESYNC = "resync"
    """Changes found by comparing a fresh backlog, after a reconnect, with the view.

    Nodes deleted while disconnected are reported with the last state the follower
    saw: their final state is unknown.
    """


class Phase(enum.Enum):
    """Where a :class:`Cluster` stands in its streams."""

    INITIAL_BACKLOG = "initial backlog"
    """Collecting the first backlog: nothing is committed yet."""
    LIVE = "live"
    """The current stream's backlog is committed; events apply one by one."""
    RESYNCING = "resyncing"
    """Collecting a later stream's backlog; the last committed state stays in force."""


@dataclass(frozen=True, slots=True)
class ClusterDelta:
    """What one applied event changed in a :class:`Cluster`.

    Attributes:
        changed: Ids of the nodes that appeared, changed or disappeared.
        kind: ``INITIAL`` or ``RESYNC`` when a backlog was committed, else ``LIVE``.
    """

    changed: Collection[str]
    kind: BatchKind


class Cluster:
    """The cluster's nodes as one NodesInCluster stream reports them.

    A stream first sends a backlog, which is collected and committed as one change
    when its last event arrives; after that each event is applied on its own. After a
    reconnect, :meth:`restart` begins a new backlog; until it is complete the last
    committed state stays in force.

    Applying an event is split in two so that the caller can spread the decoding of
    a large event over time: :meth:`to_decode` lists the serialized nodes the event
    needs decoded (those whose bytes this cluster has not seen for that id), the
    caller decodes them (for example with :func:`decode_nodes`, in chunks), then
    :meth:`apply` commits the event whole (or :meth:`apply_steps`, in steps).
    """

    def __init__(self) -> None:
        self._raw: dict[str, bytes] = {}
        self._nodes: FrozenMap[str, Node] = FrozenMap()
        self._phase = Phase.INITIAL_BACKLOG
        # While a backlog is being collected: every node id in it and its bytes, and
        # the decoded nodes among them whose bytes differ from the committed state.
        self._backlog: dict[str, bytes] = {}
        self._backlog_changed: dict[str, Node] = {}

    @property
    def nodes(self) -> Mapping[str, Node]:
        """The committed cluster: an immutable snapshot mapping node id to node."""
        return self._nodes

    @property
    def phase(self) -> Phase:
        """Where the cluster stands in its streams."""
        return self._phase

    @property
    def synced(self) -> bool:
        """Whether the current stream's backlog has been committed."""
        return self._phase is Phase.LIVE

    @property
    def ever_synced(self) -> bool:
        """Whether any backlog has been committed: :attr:`nodes` is meaningful."""
        return self._phase is not Phase.INITIAL_BACKLOG

    def restart(self) -> None:
        """Begin collecting the backlog of a new stream."""
        if self._phase is Phase.LIVE:
            self._phase = Phase.RESYNCING
        self._backlog = {}
        self._backlog_changed = {}

    def to_decode(self, event: RawEvent) -> list[bytes]:
        """The serialized nodes of ``event`` that must be decoded before :meth:`apply`."""
        raw = self._raw
        return [data for node_id, data in event.nodes if raw.get(node_id) != data]

    def apply(self, event: RawEvent, decoded: Mapping[bytes, Node]) -> ClusterDelta | None:
        """Apply one event, whole, in one go: :meth:`apply_steps` run to its end."""
        return run_steps(self.apply_steps(event, decoded))

    def apply_steps(
        self, event: RawEvent, decoded: Mapping[bytes, Node], chunk: int = COMMIT_CHUNK
    ) -> Steps[ClusterDelta | None]:
        """Apply one event, whole, in steps of about ``chunk`` nodes of commit work.

        Only the commit of a backlog takes more than one step. The committed state
        (:attr:`nodes`, :attr:`phase`) changes in the last step alone, so between
        steps, and when the generator is closed before its end, it is as before the
        event; a backlog commit abandoned that way leaves the collected backlog for
        :meth:`restart` to discard.

        Args:
            event: The event, split at the wire level.
            decoded: At least the nodes :meth:`to_decode` listed, keyed by their bytes.

        Returns:
            What changed, or None for a backlog event before the last and for a
            live event that repeats known states. A committed backlog always gives
            a delta (perhaps with no changed ids), since it marks a sync.

        Raises:
            ProtocolError: The event holds a node or tombstone without an id; the
                cluster is left as it was.
            ValueError: ``decoded`` lacks a node :meth:`to_decode` listed; the
                cluster is left as it was.
        """
        # Every lookup happens before anything changes, so a missing node leaves the
        # cluster as it was (never the bytes cache ahead of the nodes).
        states = self._states(event, decoded)
        if self._phase is not Phase.LIVE:
            # A backlog event may hold thousands of nodes: reading and collecting
            # them are steps of their own.
            yield
            if self._collect(event, states):
                yield
                return (yield from self._commit_backlog(chunk))
            return None
        # A second LAST_BACKLOGGED on a live stream breaks the contract, but its
        # nodes are still valid states: apply them like any other event.
        final: dict[str, tuple[bytes, Node | None] | None] = {
            node_id: (data, node) for node_id, data, node in states
        }
        for node_id in event.tombstones:
            final[node_id] = None
        raw = self._raw
        changed: list[str] = []
        nodes = self._nodes.mutate()
        for node_id, state in final.items():
            if state is None:
                if node_id in raw:
                    del raw[node_id]
                    del nodes[node_id]
                    changed.append(node_id)
            else:
                data, node = state
                if node is not None:  # bytes new to this cluster
                    raw[node_id] = data
                    nodes[node_id] = node
                    changed.append(node_id)
        self._nodes = nodes.finish()
        return ClusterDelta(changed, BatchKind.LIVE) if changed else None

    def _states(
        self, event: RawEvent, decoded: Mapping[bytes, Node]
    ) -> list[tuple[str, bytes, Node | None]]:
        """The event's nodes as ``(id, bytes, decoded node or None when known)``."""
        if "" in event.tombstones:
            raise ProtocolError("the Curator sent a tombstone without a node id")
        raw = self._raw
        states: list[tuple[str, bytes, Node | None]] = []
        for node_id, data in event.nodes:
            if not node_id:
                raise ProtocolError("the Curator sent a node without an id")
            known = raw.get(node_id)
            if known == data:
                # Keep the committed bytes object: the new copy would double memory.
                states.append((node_id, known, None))
                continue
            node = decoded.get(data)
            if node is None:
                raise ValueError("apply() needs every node that to_decode() listed, decoded")
            states.append((node_id, data, node))
        return states

    def _collect(self, event: RawEvent, states: list[tuple[str, bytes, Node | None]]) -> bool:
        """Add a backlog event to the backlog; return whether it was the last one."""
        backlog = self._backlog
        backlog_changed = self._backlog_changed
        for node_id, data, node in states:
            backlog[node_id] = data
            if node is None:
                backlog_changed.pop(node_id, None)
            else:
                backlog_changed[node_id] = node
        for node_id in event.tombstones:
            backlog.pop(node_id, None)
            backlog_changed.pop(node_id, None)
        return event.last_backlogged

    def _commit_backlog(self, chunk: int) -> Steps[ClusterDelta]:
        backlog = self._backlog
        backlog_changed = self._backlog_changed
        changed = list(backlog_changed)
        nodes = self._nodes.mutate()
        for ids in _chunks(changed, chunk):
            for node_id in ids:
                nodes[node_id] = backlog_changed[node_id]
            yield
        vanished: list[str] = []
        for ids in _chunks(list(self._raw), chunk):
            vanished.extend(node_id for node_id in ids if node_id not in backlog)
            yield
        for ids in _chunks(vanished, chunk):
            for node_id in ids:
                del nodes[node_id]
            yield
        self._nodes = yield from nodes.finish_steps(chunk)
        self._raw = backlog
        self._backlog = {}
        self._backlog_changed = {}
        kind = BatchKind.RESYNC if self._phase is Phase.RESYNCING else BatchKind.INITIAL
        self._phase = Phase.LIVE
        return ClusterDelta(changed + vanished, kind)


@dataclass(frozen=True, slots=True)
class NodeBatch:
    """One batch of changes to a follower's view, as :func:`open_node_changes` yields.

    Attributes:
        new: Nodes that entered the view, in node id order.
        updated: ``(previous, current)`` pairs of nodes whose state changed for the
            follower, in node id order.
        deleted: The last known state of nodes that left the view (deleted, or
            filtered out), in node id order.
        view: The follower's view after this batch: an immutable mapping of node
            id to node. It is a snapshot: later batches do not change it.
        kind: Why the batch was delivered; the first batch is ``INITIAL`` and
            holds the whole (filtered) cluster.
    """

    new: tuple[Node, ...]
    updated: tuple[tuple[Node, Node], ...]
    deleted: tuple[Node, ...]
    view: Mapping[str, Node] = field(repr=False)
    kind: BatchKind

    @property
    def initial(self) -> bool:
        """Whether this is the follower's first batch (the whole initial view)."""
        return self.kind is BatchKind.INITIAL

    @property
    def resync(self) -> bool:
        """Whether the changes were found by a resync after a reconnect."""
        return self.kind is BatchKind.RESYNC

    def __bool__(self) -> bool:
        """True when the batch holds at least one change."""
        return bool(self.new or self.updated or self.deleted)

    def upserts(self) -> Iterator[tuple[Node | None, Node]]:
        """New and updated nodes together in node id order, as ``(previous, current)``.

        ``previous`` is None for a new node. This is the order in which a follower's
        ``new`` and ``updated`` callbacks are called.
        """
        added: Iterator[tuple[Node | None, Node]] = ((None, node) for node in self.new)
        return heapq.merge(added, self.updated, key=_current_id)


def _current_id(change: tuple[Node | None, Node]) -> str:
    return str(change[1].id)


def _admit_all(node: Node) -> bool:
    return True


def _message_equals(a: Node, b: Node) -> bool:
    return a == b


def _merged_kind(pending: BatchKind | None, new: BatchKind) -> BatchKind:
    """The kind of a pending batch once changes of kind ``new`` join it.

    A pending INITIAL batch absorbs later changes; a LIVE one becomes a RESYNC when a
    resync touched it, since it may then hold deletions seen by absence.
    """
    if pending is None or (pending is BatchKind.LIVE and new is BatchKind.RESYNC):
        return new
    return pending


class FollowerView:
    """One follower's view of the cluster and the changes it has yet to see.

    The view is what the follower has been told: a node enters it through ``new``,
    changes through ``updated`` and leaves it through ``deleted``. When ``equals``
    holds between the view's copy and the cluster's, the view keeps its copy, so
    ``updated`` always receives the state the follower last saw as ``previous``.

    Args:
        filter: Admits a node into the view; None admits every node.
        equals: Says two states are the same for this follower; None compares the
            whole message.
    """

    def __init__(self, filter: NodeFilter | None = None, equals: NodeEquals | None = None) -> None:
        self._filter = filter or _admit_all
        self._equals = equals or _message_equals
        self._view: FrozenMap[str, Node] = FrozenMap()
        self._pending: set[str] = set()
        self._pending_kind: BatchKind | None = BatchKind.INITIAL

    @property
    def view(self) -> Mapping[str, Node]:
        """The nodes this follower has been told about, by id (an immutable snapshot)."""
        return self._view

    @property
    def has_pending(self) -> bool:
        """Whether :meth:`take_batch` may have something to deliver."""
        return self._pending_kind is not None

    def mark(self, delta: ClusterDelta) -> None:
        """Remember the node ids a cluster change touched, for the next batch."""
        self._pending.update(delta.changed)
        self._pending_kind = _merged_kind(self._pending_kind, delta.kind)

    def mark_all(self, ids: Iterable[str]) -> None:
        """Remember ``ids`` as changed; used when a follower joins a synced cluster."""
        self._pending.update(ids)

    def take_batch(self, nodes: Mapping[str, Node]) -> NodeBatch | None:
        """Diff the pending ids against ``nodes`` in one go: :meth:`take_batch_steps`
        run to its end."""
        return run_steps(self.take_batch_steps(nodes))

    def take_batch_steps(
        self, nodes: Mapping[str, Node], chunk: int = DIFF_CHUNK
    ) -> Steps[NodeBatch | None]:
        """Diff the pending ids against ``nodes`` and update the view, in steps of
        ``chunk`` nodes.

        Args:
            nodes: The committed cluster (:attr:`Cluster.nodes`); it must not change
                while the steps run (a :class:`Cluster` snapshot never does).
            chunk: Pending ids diffed per step.

        Returns:
            (As the generator's result.) The batch, or None when the pending
            changes change nothing for this follower. The initial batch is returned
            even when empty.

        The pending changes are taken in the first step: changes marked while the
        steps run wait for the next batch. The view changes in the last step alone.
        If ``filter`` or ``equals`` raises, or the generator is closed before its
        end, the view is as it was and the changes taken are pending again (with
        those marked meanwhile).
        """
        kind = self._pending_kind
        if kind is None:
            return None
        pending = self._pending
        self._pending = set()
        self._pending_kind = None
        try:
            batch = yield from self._diff(pending, nodes, kind, chunk)
        except BaseException:
            self._restore(pending, kind)
            raise
        return batch

    def _restore(self, pending: set[str], kind: BatchKind) -> None:
        """Make changes taken by an unfinished diff pending again, before those marked since."""
        pending.update(self._pending)
        self._pending = pending
        if self._pending_kind is not None:
            kind = _merged_kind(kind, self._pending_kind)
        self._pending_kind = kind

    def _diff(
        self, pending: set[str], nodes: Mapping[str, Node], kind: BatchKind, chunk: int
    ) -> Steps[NodeBatch | None]:
        # Sorting 100,000 ids at once takes some 50 ms: sort runs, one per step,
        # and merge them as the diff goes.
        runs: list[list[str]] = []
        for some in _chunks(list(pending), SORT_RUN):
            runs.append(sorted(some))
            yield
        ids: Iterator[str] = iter(runs[0]) if len(runs) == 1 else heapq.merge(*runs)
        admit = self._filter
        equals = self._equals
        new: list[Node] = []
        updated: list[tuple[Node, Node]] = []
        deleted: list[Node] = []
        view = self._view.mutate()
        for some in iter(lambda: list(itertools.islice(ids, chunk)), []):
            yield
            for node_id in some:
                node = nodes.get(node_id)
                previous = view.get(node_id)
                if node is not None and admit(node):
                    if previous is None:
                        new.append(node)
                        view[node_id] = node
                    elif previous is not node and not equals(previous, node):
                        updated.append((previous, node))
                        view[node_id] = node
                elif previous is not None:
                    deleted.append(previous)
                    del view[node_id]
        result = yield from view.finish_steps(chunk)
        self._view = result
        if kind is not BatchKind.INITIAL and not (new or updated or deleted):
            return None
        return NodeBatch(tuple(new), tuple(updated), tuple(deleted), result, kind)


class BacklogLookup:
    """Finds one node's state in a NodesInCluster backlog, fed one event at a time.

    Only ids are compared; nothing is decoded. Across the backlog a node that an
    event does not mention keeps its earlier state, and a tombstone clears it.
    Give the finished lookup to :class:`NodeTracker`.

    Args:
        node_id: The node to look for.
    """

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._state: bytes | None = None
        self._complete = False

    @property
    def state(self) -> bytes | None:
        """The node's serialized state so far; None while it is absent or deleted."""
        return self._state

    @property
    def complete(self) -> bool:
        """Whether the backlog's last event has been fed."""
        return self._complete

    def feed(self, event: RawEvent) -> bool:
        """Take one backlog event; return whether the backlog is now complete."""
        node_id = self.node_id
        for other_id, data in event.nodes:
            if other_id == node_id:
                self._state = data
        if node_id in event.tombstones:
            self._state = None
        if event.last_backlogged:
            self._complete = True
        return self._complete


class NodeTracker:
    """Follows one node id through the events of a NodeInCluster stream.

    Events may carry other nodes; they are ignored. Within one event, nodes are
    applied before tombstones, and the last state of the node wins. A finished
    :class:`BacklogLookup` is applied like an event that states the node's state:
    a node it did not find is deleted.

    Args:
        node_id: The node to follow.
    """

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._raw: bytes | None = None
        self._node: Node | None = None
        self._deleted = False

    @property
    def node(self) -> Node | None:
        """The node's latest state, or None before it was seen."""
        return self._node

    @property
    def deleted(self) -> bool:
        """Whether the node has been deleted."""
        return self._deleted

    def _final(self, source: RawEvent | BacklogLookup) -> bytes | _Unmentioned | None:
        """The node's state in ``source``: its bytes, None when deleted, or unmentioned."""
        if isinstance(source, BacklogLookup):
            return source.state
        if self.node_id in source.tombstones:
            return None
        final: bytes | _Unmentioned = _UNMENTIONED
        for node_id, data in source.nodes:
            if node_id == self.node_id:
                final = data
        return final

    def to_decode(self, source: RawEvent | BacklogLookup) -> bytes | None:
        """The serialized state of the node in ``source`` that needs decoding, if any."""
        data = self._final(source)
        if isinstance(data, bytes) and data != self._raw and not self._deleted:
            return data
        return None

    def apply(self, source: RawEvent | BacklogLookup, decoded: Node | None) -> bool:
        """Apply one event or a finished lookup; return whether the node changed or went.

        Args:
            source: The event, split at the wire level, or a complete lookup.
            decoded: The decoded node :meth:`to_decode` asked for, else None.
        """
        if self._deleted:
            return False
        data = self._final(source)
        if data is None:
            self._deleted = True
            return True
        if data is _UNMENTIONED or data == self._raw:
            return False
        assert isinstance(data, bytes)
        assert decoded is not None, "to_decode() listed this state"
        self._raw = data
        self._node = decoded
        return True


class _Unmentioned(enum.Enum):
    UNMENTIONED = enum.auto()


# An event that does not mention the tracked node.
_UNMENTIONED = _Unmentioned.UNMENTIONED
