"""Tests of trionodes._core.engine: the pure diff engine (Cluster, FollowerView, NodeTracker).

Events are built the way a Curator sends them: serialized nodes wrapped in a
``WatchEvent`` by ``encode_watch_event``, then split at the wire level by
``split_watch_event``, exactly as the watch loop feeds them to the engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trionodes._core.engine import (
    BacklogLookup,
    BatchKind,
    Cluster,
    ClusterDelta,
    FollowerView,
    NodeBatch,
    NodeEquals,
    NodeFilter,
    NodeTracker,
    Phase,
    decode_node,
    decode_nodes,
)
from trionodes._core.wire import RawEvent, encode_watch_event, split_watch_event
from trionodes._errors import ProtocolError
from trionodes._proto.metropolis.node.core.curator.proto.api import Node
from trionodes._proto.metropolis.proto.common import NodeState
from trionodes.testing import make_node

# --- Helpers -----------------------------------------------------------------------------


def nid(index: int) -> str:
    """The id ``make_node(index)`` gives; ids sort like their indexes."""
    return f"metropolis-{index:032x}"


def event(
    nodes: Iterable[Node | bytes] = (), tombstones: Iterable[str] = (), *, last: bool = False
) -> RawEvent:
    """Encode a WatchEvent and split it, as the watch loop receives it."""
    raw = [node if isinstance(node, bytes) else bytes(node) for node in nodes]
    return split_watch_event(encode_watch_event(raw, tombstones, last_backlogged=last))


def apply(cluster: Cluster, ev: RawEvent) -> ClusterDelta | None:
    """Decode what the cluster asks for, then apply the event."""
    return cluster.apply(ev, decode_nodes(cluster.to_decode(ev)))


def synced(*nodes: Node) -> Cluster:
    """A cluster whose initial backlog (one event) held ``nodes``."""
    cluster = Cluster()
    delta = apply(cluster, event(nodes, last=True))
    assert delta is not None
    assert delta.kind is BatchKind.INITIAL
    return cluster


def feed(cluster: Cluster, views: Iterable[FollowerView], ev: RawEvent) -> ClusterDelta | None:
    """Apply an event and tell the views, as NodeWatch does."""
    delta = apply(cluster, ev)
    if delta is not None:
        for view in views:
            view.mark(delta)
    return delta


def joined(cluster: Cluster, view: FollowerView) -> FollowerView:
    """Attach a view to an already synced cluster, as NodeWatch._subscribe does."""
    assert cluster.ever_synced
    view.mark_all(cluster.nodes)
    return view


def take(view: FollowerView, cluster: Cluster) -> NodeBatch:
    """Take a batch that must exist."""
    batch = view.take_batch(cluster.nodes)
    assert batch is not None
    return batch


def sync_state(cluster: Cluster) -> tuple[bool, bool]:
    """``synced`` and ``ever_synced`` (read through a call, which mypy does not narrow)."""
    return cluster.synced, cluster.ever_synced


def has_pending(view: FollowerView) -> bool:
    return view.has_pending


def same(a: Mapping[str, Node], b: Mapping[str, Node]) -> bool:
    """Whether two snapshots hold the same ids and the very same node objects."""
    return len(a) == len(b) and all(a.get(k) is node for k, node in b.items())


def ids_of(nodes: Iterable[Node]) -> list[str]:
    return [node.id for node in nodes]


def address(node: Node) -> str:
    return node.status.external_address if node.status is not None else ""


def same_address(a: Node, b: Node) -> bool:
    return address(a) == address(b)


def same_state(a: Node, b: Node) -> bool:
    return a.state == b.state


def is_up(node: Node) -> bool:
    return node.state == NodeState.UP


def not_decommissioned(node: Node) -> bool:
    return node.state != NodeState.DECOMMISSIONED


@dataclass
class Boom(Exception):
    """Raised by a follower's filter or equals on purpose."""


@dataclass
class Counter:
    """Counts the calls a follower's filter and equals get; can make them raise.

    Attributes:
        fail_after: When set, the call after this many calls (filter and equals
            together) raises :class:`Boom`.
    """

    filter_calls: int = 0
    equals_calls: int = 0
    fail_after: int | None = None

    def _call(self) -> None:
        if self.fail_after is not None and self.filter_calls + self.equals_calls > self.fail_after:
            raise Boom

    def filter(self, inner: NodeFilter) -> NodeFilter:
        def counted(node: Node) -> bool:
            self.filter_calls += 1
            self._call()
            return inner(node)

        return counted

    def equals(self, inner: NodeEquals) -> NodeEquals:
        def counted(a: Node, b: Node) -> bool:
            self.equals_calls += 1
            self._call()
            return inner(a, b)

        return counted


def admit_all(node: Node) -> bool:
    return True


def message_equals(a: Node, b: Node) -> bool:
    return a == b


# --- Cluster: backlogs --------------------------------------------------------------------


def test_backlog_split_over_events_is_committed_only_at_last_backlogged() -> None:
    # Fault 7: the Go package hands out a partial cluster after the first event.
    cluster = Cluster()
    view = FollowerView()
    assert not cluster.synced
    assert not cluster.ever_synced
    assert feed(cluster, [view], event([make_node(3), make_node(1)])) is None
    assert feed(cluster, [view], event([make_node(2)])) is None
    assert dict(cluster.nodes) == {}
    assert sync_state(cluster) == (False, False)
    delta = feed(cluster, [view], event([make_node(4)], last=True))
    assert delta is not None
    assert delta.kind is BatchKind.INITIAL
    assert sorted(delta.changed) == [nid(1), nid(2), nid(3), nid(4)]
    assert sync_state(cluster) == (True, True)
    assert dict(cluster.nodes) == {nid(i): make_node(i) for i in (1, 2, 3, 4)}
    batch = take(view, cluster)
    assert batch.kind is BatchKind.INITIAL
    assert batch.initial
    assert not batch.resync
    assert ids_of(batch.new) == [nid(1), nid(2), nid(3), nid(4)]
    assert batch.updated == ()
    assert batch.deleted == ()


def test_empty_backlog_commits_and_gives_an_empty_initial_batch() -> None:
    cluster = Cluster()
    view = FollowerView()
    delta = feed(cluster, [view], event(last=True))
    assert delta is not None
    assert delta.kind is BatchKind.INITIAL
    assert list(delta.changed) == []
    assert cluster.synced
    batch = take(view, cluster)
    assert batch.kind is BatchKind.INITIAL
    assert not batch
    assert dict(batch.view) == {}
    # Nothing more is pending.
    assert not view.has_pending
    assert view.take_batch(cluster.nodes) is None


def test_backlog_duplicates_last_wins_and_tombstones_remove_across_events() -> None:
    cluster = Cluster()
    assert apply(cluster, event([make_node(1), make_node(2), make_node(3)])) is None
    assert apply(cluster, event([make_node(1, state=NodeState.NEW)], [nid(2)])) is None
    delta = apply(cluster, event([], [nid(9)], last=True))
    assert delta is not None
    assert sorted(delta.changed) == [nid(1), nid(3)]
    assert dict(cluster.nodes) == {
        nid(1): make_node(1, state=NodeState.NEW),
        nid(3): make_node(3),
    }


def test_restart_during_initial_backlog_discards_the_partial_backlog() -> None:
    cluster = Cluster()
    assert apply(cluster, event([make_node(1), make_node(2)])) is None
    cluster.restart()
    assert apply(cluster, event([make_node(3)])) is None
    delta = apply(cluster, event([make_node(2)], last=True))
    assert delta is not None
    # Still the first commit: INITIAL, not RESYNC, and node 1 never existed.
    assert delta.kind is BatchKind.INITIAL
    assert sorted(delta.changed) == [nid(2), nid(3)]
    assert set(cluster.nodes) == {nid(2), nid(3)}


# --- Cluster: live events -----------------------------------------------------------------


def test_live_event_applies_nodes_then_tombstones_whatever_the_wire_order() -> None:
    cluster = synced(make_node(1), make_node(2))
    # The tombstone comes first on the wire; concatenated messages merge their fields.
    wire = encode_watch_event([], [nid(1)]) + encode_watch_event([bytes(make_node(1, address="a"))])
    ev = split_watch_event(wire)
    assert ev.tombstones == (nid(1),)
    delta = apply(cluster, ev)
    assert delta is not None
    assert delta.kind is BatchKind.LIVE
    assert list(delta.changed) == [nid(1)]
    assert set(cluster.nodes) == {nid(2)}


def test_put_and_tombstone_of_an_unknown_node_in_one_event_changes_nothing() -> None:
    cluster = synced(make_node(1))
    before = cluster.nodes
    assert apply(cluster, event([make_node(5)], [nid(5)])) is None
    assert same(cluster.nodes, before)


def test_tombstone_for_an_unknown_node_is_ignored() -> None:
    cluster = synced(make_node(1))
    before = cluster.nodes
    assert apply(cluster, event([], [nid(7)])) is None
    assert same(cluster.nodes, before)
    # Mixed with a real change, only the real change is reported.
    delta = apply(cluster, event([make_node(2)], [nid(7), nid(8)]))
    assert delta is not None
    assert list(delta.changed) == [nid(2)]
    assert set(cluster.nodes) == {nid(1), nid(2)}


def test_duplicate_ids_in_one_event_last_wins() -> None:
    cluster = synced(make_node(1))
    up, new = make_node(1), make_node(1, state=NodeState.NEW)
    delta = apply(cluster, event([up, new]))
    assert delta is not None
    assert list(delta.changed) == [nid(1)]
    assert cluster.nodes[nid(1)] == new
    # new then up again: the final state is the committed one, which is no change.
    delta = apply(cluster, event([up, new]))
    assert delta is None
    delta = apply(cluster, event([new, up, new, up]))
    assert delta is not None
    assert list(delta.changed) == [nid(1)]
    assert cluster.nodes[nid(1)] == up


def test_repeated_state_is_no_change_and_is_not_decoded_again() -> None:
    cluster = synced(make_node(1), make_node(2))
    node = cluster.nodes[nid(1)]
    ev = event([make_node(1)])
    assert cluster.to_decode(ev) == []
    assert apply(cluster, ev) is None
    assert cluster.nodes[nid(1)] is node


def test_second_last_backlogged_on_a_live_stream_is_a_live_event() -> None:
    cluster = synced(make_node(1))
    delta = apply(cluster, event([make_node(2)], last=True))
    assert delta is not None
    assert delta.kind is BatchKind.LIVE
    assert set(cluster.nodes) == {nid(1), nid(2)}


@pytest.mark.parametrize("backlog", [False, True])
def test_an_id_less_node_or_tombstone_rejects_the_whole_event(backlog: bool) -> None:
    cluster = synced(make_node(1))
    if backlog:
        cluster.restart()
    before = cluster.nodes
    nameless = make_node(2)
    nameless.id = ""
    for ev in (
        event([make_node(3), nameless], [nid(1)]),
        event([make_node(3)], [nid(1), ""], last=True),
    ):
        with pytest.raises(ProtocolError, match=r"without an? (node )?id"):
            apply(cluster, ev)
        assert same(cluster.nodes, before)
        assert cluster.synced is not backlog
    # Nothing of the rejected events was kept, in the backlog either.
    apply(cluster, event([make_node(4)], last=True))
    assert set(cluster.nodes) == ({nid(4)} if backlog else {nid(1), nid(4)})


def test_undecodable_node_leaves_the_cluster_untouched() -> None:
    cluster = synced(make_node(1), make_node(2))
    before = cluster.nodes
    # A valid top level (the splitter accepts it) whose status holds invalid UTF-8.
    broken = bytes(make_node(1, address="x")) + b"\x1a\x03\x0a\x01\xff"
    ev = event([make_node(2, state=NodeState.NEW), broken], [nid(2)])
    assert [node_id for node_id, _ in ev.nodes] == [nid(2), nid(1)]
    with pytest.raises(ProtocolError):
        decode_nodes(cluster.to_decode(ev))
    assert same(cluster.nodes, before)
    # The next good event applies on the untouched state.
    delta = apply(cluster, event([make_node(1, address="y")]))
    assert delta is not None
    assert list(delta.changed) == [nid(1)]


def test_apply_is_whole_or_nothing_when_a_decoded_node_is_missing() -> None:
    # Breaking apply()'s contract (a node to_decode listed is missing) must not leave
    # the cluster half changed: its bytes cache and its nodes must still agree.
    cluster = synced(make_node(1), make_node(2))
    before = cluster.nodes
    first, second = make_node(1, state=NodeState.NEW), make_node(2, state=NodeState.NEW)
    ev = event([first, second])
    decoded = decode_nodes(cluster.to_decode(ev))
    del decoded[bytes(second)]
    with pytest.raises(ValueError, match="to_decode"):
        cluster.apply(ev, decoded)
    assert same(cluster.nodes, before)
    # The same event applied properly changes both nodes.
    assert cluster.to_decode(ev) == [bytes(first), bytes(second)]
    delta = apply(cluster, ev)
    assert delta is not None
    assert sorted(delta.changed) == [nid(1), nid(2)]
    assert dict(cluster.nodes) == {nid(1): first, nid(2): second}


def test_backlog_event_is_whole_or_nothing_when_a_decoded_node_is_missing() -> None:
    cluster = synced(make_node(1))
    cluster.restart()
    first, second = make_node(2), make_node(3)
    ev = event([first, second], last=True)
    decoded = decode_nodes(cluster.to_decode(ev))
    del decoded[bytes(second)]
    with pytest.raises(ValueError, match="to_decode"):
        cluster.apply(ev, decoded)
    assert not cluster.synced
    delta = apply(cluster, ev)
    assert delta is not None
    assert delta.kind is BatchKind.RESYNC
    assert sorted(delta.changed) == [nid(1), nid(2), nid(3)]
    assert dict(cluster.nodes) == {nid(2): first, nid(3): second}


# --- Cluster + FollowerView: resync after a restart --------------------------------------


def test_resync_diffs_the_new_backlog_against_the_committed_state() -> None:
    cluster = synced(make_node(1), make_node(2), make_node(3))
    view = joined(cluster, FollowerView())
    take(view, cluster)
    before = cluster.nodes
    cluster.restart()
    # During the new backlog the committed state stays in force.
    assert not cluster.synced
    assert cluster.ever_synced
    unchanged = event([make_node(1)])
    assert cluster.to_decode(unchanged) == []  # the bytes cache spares the decoding
    assert feed(cluster, [view], unchanged) is None
    changed = event([make_node(2, state=NodeState.NEW), make_node(4)])
    assert len(cluster.to_decode(changed)) == 2
    assert feed(cluster, [view], changed) is None
    assert same(cluster.nodes, before)
    assert not view.has_pending
    # Node 3 is missing from the new backlog: it was deleted while disconnected.
    delta = feed(cluster, [view], event(last=True))
    assert delta is not None
    assert delta.kind is BatchKind.RESYNC
    assert sorted(delta.changed) == [nid(2), nid(3), nid(4)]
    assert cluster.nodes[nid(1)] is before[nid(1)]
    batch = take(view, cluster)
    assert batch.kind is BatchKind.RESYNC
    assert batch.resync
    assert ids_of(batch.new) == [nid(4)]
    assert [(a.id, b.state) for a, b in batch.updated] == [(nid(2), NodeState.NEW)]
    assert batch.updated[0][0] is before[nid(2)]
    assert batch.deleted == (before[nid(3)],)


def test_resync_that_changes_nothing_gives_no_batch() -> None:
    cluster = synced(make_node(1), make_node(2))
    view = joined(cluster, FollowerView())
    take(view, cluster)
    before = cluster.nodes
    cluster.restart()
    assert feed(cluster, [view], event([make_node(2)])) is None
    delta = feed(cluster, [view], event([make_node(1)], last=True))
    assert delta is not None
    assert list(delta.changed) == []
    assert same(cluster.nodes, before)
    assert view.take_batch(cluster.nodes) is None


def test_pending_live_changes_become_a_resync_batch() -> None:
    cluster = synced(make_node(1), make_node(2))
    view = joined(cluster, FollowerView())
    take(view, cluster)
    feed(cluster, [view], event([make_node(3)]))
    cluster.restart()
    feed(cluster, [view], event([make_node(1), make_node(3)], last=True))
    batch = take(view, cluster)
    assert batch.kind is BatchKind.RESYNC
    # Node 3 came and node 2 went; the follower sees the merged result.
    assert ids_of(batch.new) == [nid(3)]
    assert ids_of(batch.deleted) == [nid(2)]
    # A later live change is LIVE again.
    feed(cluster, [view], event([make_node(5)]))
    assert take(view, cluster).kind is BatchKind.LIVE


def test_pending_initial_batch_absorbs_a_resync() -> None:
    cluster = synced(make_node(1), make_node(2))
    view = joined(cluster, FollowerView())
    cluster.restart()
    feed(cluster, [view], event([make_node(2), make_node(3)], last=True))
    batch = take(view, cluster)
    assert batch.kind is BatchKind.INITIAL
    assert ids_of(batch.new) == [nid(2), nid(3)]
    assert batch.deleted == ()


def test_follower_joining_during_a_resync_starts_from_the_committed_state() -> None:
    cluster = synced(make_node(1), make_node(2))
    cluster.restart()
    apply(cluster, event([make_node(2)]))
    view = joined(cluster, FollowerView())
    first = take(view, cluster)
    assert first.kind is BatchKind.INITIAL
    assert ids_of(first.new) == [nid(1), nid(2)]
    feed(cluster, [view], event([make_node(3)], last=True))
    second = take(view, cluster)
    assert second.kind is BatchKind.RESYNC
    assert ids_of(second.new) == [nid(3)]
    assert ids_of(second.deleted) == [nid(1)]


# --- FollowerView -------------------------------------------------------------------------


def test_calls_are_in_id_order_new_and_updated_interleaved_then_deleted() -> None:
    cluster = synced(*(make_node(i) for i in (0, 2, 4, 9)))
    view = joined(cluster, FollowerView())
    take(view, cluster)
    # Wire order deliberately not sorted.
    feed(
        cluster,
        [view],
        event(
            [make_node(5), make_node(4, address="x"), make_node(1), make_node(2, address="y")],
            [nid(9), nid(0)],
        ),
    )
    feed(cluster, [view], event([make_node(3)]))
    batch = take(view, cluster)
    assert batch.kind is BatchKind.LIVE
    assert ids_of(batch.new) == [nid(1), nid(3), nid(5)]
    assert [prev.id for prev, _ in batch.updated] == [nid(2), nid(4)]
    assert ids_of(batch.deleted) == [nid(0), nid(9)]
    upserts = list(batch.upserts())
    assert [node.id for _, node in upserts] == [nid(i) for i in (1, 2, 3, 4, 5)]
    assert [prev is None for prev, _ in upserts] == [True, False, True, False, True]
    assert [prev.id for prev, _ in upserts if prev is not None] == [nid(2), nid(4)]


def test_initial_batch_is_delivered_even_when_empty_for_the_follower() -> None:
    cluster = synced(make_node(1, state=NodeState.NEW))
    view = joined(cluster, FollowerView(filter=is_up))
    batch = take(view, cluster)
    assert batch.kind is BatchKind.INITIAL
    assert not batch
    assert dict(batch.view) == {}


def test_no_batch_when_nothing_changed_for_the_follower() -> None:
    # Fault 8: the Go package calls BatchDone for every event.
    cluster = synced(make_node(1), make_node(2, state=NodeState.NEW))
    up = joined(cluster, FollowerView(filter=is_up))
    everything = joined(cluster, FollowerView())
    take(up, cluster)
    take(everything, cluster)
    feed(cluster, [up, everything], event([make_node(2, state=NodeState.DECOMMISSIONED)]))
    assert has_pending(up)  # it may have something: it must look, and finds nothing
    assert up.take_batch(cluster.nodes) is None
    assert not has_pending(up)
    assert up.take_batch(cluster.nodes) is None
    batch = take(everything, cluster)
    assert [(a.id, b.state) for a, b in batch.updated] == [(nid(2), NodeState.DECOMMISSIONED)]
    # A change that is undone before the follower looks gives nothing either.
    feed(cluster, [up, everything], event([make_node(1, address="z")]))
    feed(cluster, [up, everything], event([make_node(1)]))
    assert up.take_batch(cluster.nodes) is None
    assert everything.take_batch(cluster.nodes) is None


def test_deleted_node_that_returns_is_new_again() -> None:
    # Fault 1: the Go package reports it as Updated, or not at all when Equals holds
    # against its stale copy. Here it returns in the very state it left in.
    cluster = synced(make_node(1), make_node(2))
    view = joined(cluster, FollowerView())
    take(view, cluster)
    feed(cluster, [view], event([], [nid(1)]))
    batch = take(view, cluster)
    assert ids_of(batch.deleted) == [nid(1)]
    assert nid(1) not in batch.view
    feed(cluster, [view], event([make_node(1)]))
    batch = take(view, cluster)
    assert ids_of(batch.new) == [nid(1)]
    assert batch.updated == ()


def test_filtered_out_node_that_returns_is_new_again() -> None:
    cluster = synced(make_node(1))
    view = joined(cluster, FollowerView(filter=is_up, equals=same_address))
    assert ids_of(take(view, cluster).new) == [nid(1)]
    feed(cluster, [view], event([make_node(1, state=NodeState.NEW)]))
    batch = take(view, cluster)
    assert [node.state for node in batch.deleted] == [NodeState.UP]
    feed(cluster, [view], event([make_node(1)]))
    batch = take(view, cluster)
    assert ids_of(batch.new) == [nid(1)]
    assert batch.updated == ()
    assert batch.deleted == ()


def test_node_deleted_while_disconnected_that_returns_is_new_again() -> None:
    cluster = synced(make_node(1), make_node(2))
    view = joined(cluster, FollowerView())
    take(view, cluster)
    cluster.restart()
    feed(cluster, [view], event([make_node(2)], last=True))
    assert ids_of(take(view, cluster).deleted) == [nid(1)]
    feed(cluster, [view], event([make_node(1)]))
    batch = take(view, cluster)
    assert ids_of(batch.new) == [nid(1)]
    assert batch.kind is BatchKind.LIVE


def test_view_keeps_the_reported_copy_while_equals_holds() -> None:
    cluster = synced(make_node(1))
    view = joined(cluster, FollowerView(equals=same_address))
    reported = take(view, cluster).new[0]
    # State and labels change, the address does not: nothing for this follower.
    feed(cluster, [view], event([make_node(1, state=NodeState.NEW)]))
    assert view.take_batch(cluster.nodes) is None
    feed(cluster, [view], event([make_node(1, state=NodeState.NEW, labels={"a": "b"})]))
    assert view.take_batch(cluster.nodes) is None
    assert view.view[nid(1)] is reported
    # The address changes: previous is the state the follower was told about.
    feed(cluster, [view], event([make_node(1, state=NodeState.NEW, address="10.9.9.9")]))
    batch = take(view, cluster)
    ((previous, current),) = batch.updated
    assert previous is reported
    assert previous.state == NodeState.UP
    assert address(current) == "10.9.9.9"
    assert current is cluster.nodes[nid(1)]
    assert batch.view[nid(1)] is current
    # Deleted reports the view's copy too.
    feed(cluster, [view], event([make_node(1, address="10.9.9.9")]))
    assert view.take_batch(cluster.nodes) is None
    feed(cluster, [view], event([], [nid(1)]))
    assert take(view, cluster).deleted == (current,)


def test_equal_message_with_different_bytes_is_no_update_by_default() -> None:
    # An unknown field changes the bytes (the cluster sees a change) but not the message.
    cluster = synced(make_node(1))
    view = joined(cluster, FollowerView())
    reported = take(view, cluster).new[0]
    delta = feed(cluster, [view], event([bytes(make_node(1)) + b"\xf8\x06\x01"]))
    assert delta is not None
    assert cluster.nodes[nid(1)] is not reported
    assert view.take_batch(cluster.nodes) is None
    assert view.view[nid(1)] is reported


def test_one_node_update_costs_one_filter_and_one_equals_call() -> None:
    # Fault 5: the Go package walks and sorts the whole cluster for every event.
    size = 200
    cluster = synced(*(make_node(i) for i in range(size)))
    counter = Counter()
    view = joined(cluster, FollowerView(counter.filter(admit_all), counter.equals(message_equals)))
    assert len(take(view, cluster).new) == size
    assert counter.filter_calls == size
    assert counter.equals_calls == 0
    counter.filter_calls = counter.equals_calls = 0
    ev = event([make_node(7, address="10.1.1.1")])
    assert len(cluster.to_decode(ev)) == 1
    delta = feed(cluster, [view], ev)
    assert delta is not None
    assert list(delta.changed) == [nid(7)]
    batch = take(view, cluster)
    assert len(batch.updated) == 1
    assert (counter.filter_calls, counter.equals_calls) == (1, 1)
    # A resync after a restart that changes one node costs the same.
    counter.filter_calls = counter.equals_calls = 0
    cluster.restart()
    backlog = [make_node(i) for i in range(size) if i != 7] + [make_node(7, address="10.2.2.2")]
    feed(cluster, [view], event(backlog[: size // 2]))
    feed(cluster, [view], event(backlog[size // 2 :], last=True))
    batch = take(view, cluster)
    assert batch.kind is BatchKind.RESYNC
    assert len(batch.updated) == 1
    assert (counter.filter_calls, counter.equals_calls) == (1, 1)
    # A tombstone costs one filter call and no equals call.
    counter.filter_calls = counter.equals_calls = 0
    feed(cluster, [view], event([], [nid(8)]))
    assert ids_of(take(view, cluster).deleted) == [nid(8)]
    assert (counter.filter_calls, counter.equals_calls) == (0, 0)


def test_changes_to_one_node_collapse_into_one() -> None:
    cluster = synced(make_node(1))
    counter = Counter()
    view = joined(cluster, FollowerView(counter.filter(admit_all), counter.equals(message_equals)))
    take(view, cluster)
    counter.filter_calls = 0
    for n in range(10):
        feed(cluster, [view], event([make_node(1, address=f"10.0.0.{n}")]))
    batch = take(view, cluster)
    ((previous, current),) = batch.updated
    assert address(previous) == address(make_node(1))
    assert address(current) == "10.0.0.9"
    assert (counter.filter_calls, counter.equals_calls) == (1, 1)


@pytest.mark.parametrize("failing", ["filter", "equals"])
def test_raising_filter_or_equals_leaves_view_and_pending_changes_untouched(
    failing: str,
) -> None:
    fail = False

    def flaky_filter(node: Node) -> bool:
        if fail and failing == "filter" and node.id == nid(3):
            raise RuntimeError("filter failed")
        return node.state != NodeState.DECOMMISSIONED

    def flaky_equals(a: Node, b: Node) -> bool:
        if fail and failing == "equals" and a.id == nid(3):
            raise RuntimeError("equals failed")
        return a == b

    cluster = synced(*(make_node(i) for i in range(1, 5)))
    view = joined(cluster, FollowerView(flaky_filter, flaky_equals))
    take(view, cluster)
    before = view.view
    # Ids 1 and 2 sort before 3, so their changes are diffed before the failure.
    feed(
        cluster,
        [view],
        event(
            [
                make_node(1, address="10.7.7.7"),
                make_node(2, state=NodeState.DECOMMISSIONED),
                make_node(3, address="10.8.8.8"),
                make_node(5),
            ]
        ),
    )
    fail = True
    for _ in range(2):
        with pytest.raises(RuntimeError, match="failed"):
            view.take_batch(cluster.nodes)
        assert same(view.view, before)
        assert dict(view.view) == {nid(i): make_node(i) for i in range(1, 5)}
        assert view.has_pending
    fail = False
    batch = take(view, cluster)
    assert batch.kind is BatchKind.LIVE
    assert ids_of(batch.new) == [nid(5)]
    assert [prev.id for prev, _ in batch.updated] == [nid(1), nid(3)]
    assert ids_of(batch.deleted) == [nid(2)]
    assert not view.has_pending


def test_raising_filter_keeps_a_pending_initial_batch_initial() -> None:
    fail = True

    def flaky(node: Node) -> bool:
        if fail:
            raise RuntimeError("filter failed")
        return True

    cluster = synced(make_node(1))
    view = joined(cluster, FollowerView(flaky))
    with pytest.raises(RuntimeError):
        view.take_batch(cluster.nodes)
    assert dict(view.view) == {}
    fail = False
    batch = take(view, cluster)
    assert batch.kind is BatchKind.INITIAL
    assert ids_of(batch.new) == [nid(1)]


def test_batch_views_are_snapshots() -> None:
    cluster = synced(make_node(1), make_node(2))
    view = joined(cluster, FollowerView())
    first = take(view, cluster)
    kept = dict(first.view)
    feed(cluster, [view], event([make_node(3), make_node(1, address="q")], [nid(2)]))
    second = take(view, cluster)
    assert dict(first.view) == kept
    assert all(first.view[k] is v for k, v in kept.items())
    assert set(second.view) == {nid(1), nid(3)}
    assert not hasattr(first.view, "__setitem__")
    assert not hasattr(cluster.nodes, "__setitem__")
    assert second.view is view.view


def test_cluster_nodes_are_snapshots() -> None:
    cluster = synced(make_node(1))
    nodes = cluster.nodes
    apply(cluster, event([make_node(2)], [nid(1)]))
    assert set(nodes) == {nid(1)}
    assert set(cluster.nodes) == {nid(2)}


def test_followers_with_different_filters_are_independent() -> None:
    cluster = synced(make_node(1), make_node(2, state=NodeState.NEW))
    everything = joined(cluster, FollowerView())
    up = joined(cluster, FollowerView(filter=is_up))
    assert ids_of(take(everything, cluster).new) == [nid(1), nid(2)]
    assert ids_of(take(up, cluster).new) == [nid(1)]
    feed(cluster, [everything, up], event([make_node(2)]))
    # Only "everything" takes a batch now; "up" keeps its pending change.
    assert len(take(everything, cluster).updated) == 1
    feed(cluster, [everything, up], event([], [nid(1)]))
    batch = take(up, cluster)
    assert ids_of(batch.new) == [nid(2)]
    assert ids_of(batch.deleted) == [nid(1)]
    assert ids_of(take(everything, cluster).deleted) == [nid(1)]


# --- NodeTracker --------------------------------------------------------------------------


def track(tracker: NodeTracker, ev: RawEvent) -> bool:
    """Feed one event to a tracker as NodeWatcher does."""
    pending = tracker.to_decode(ev)
    return tracker.apply(ev, None if pending is None else decode_node(pending))


def test_tracker_follows_its_node_and_drops_others() -> None:
    # Fault 3: the Go WatchNode does not drop other nodes.
    tracker = NodeTracker(nid(2))
    ev = event([make_node(1), make_node(3)])
    assert tracker.to_decode(ev) is None
    assert not tracker.apply(ev, None)
    assert tracker.node is None
    assert not tracker.deleted
    assert track(tracker, event([make_node(1), make_node(2), make_node(3)]))
    assert tracker.node == make_node(2)
    assert not track(tracker, event([make_node(1, state=NodeState.NEW)]))
    assert tracker.node == make_node(2)
    assert not track(tracker, event([make_node(2)]))  # the same state again
    assert track(tracker, event([make_node(3), make_node(2, address="b"), make_node(1)]))
    assert tracker.node == make_node(2, address="b")


def test_tracker_duplicates_last_wins() -> None:
    tracker = NodeTracker(nid(1))
    ev = event([make_node(1, address="a"), make_node(1, address="b")])
    assert tracker.to_decode(ev) == bytes(make_node(1, address="b"))
    assert track(tracker, ev)
    assert tracker.node == make_node(1, address="b")


def test_tracker_tombstone_alone_reports_deletion() -> None:
    # Faults 2 and 4: the Go WatchNode panics on an event with no nodes, and never
    # says the node was deleted.
    tracker = NodeTracker(nid(1))
    track(tracker, event([make_node(1)]))
    ev = event([], [nid(1)])
    assert tracker.to_decode(ev) is None
    assert tracker.apply(ev, None)
    assert tracker.deleted
    assert tracker.node == make_node(1)  # its last known state
    # Afterwards nothing changes it.
    later = event([make_node(1, address="c")])
    assert tracker.to_decode(later) is None
    assert not tracker.apply(later, None)
    assert not tracker.apply(ev, None)
    assert tracker.deleted
    assert tracker.node == make_node(1)


def test_tracker_ignores_other_tombstones_and_applies_its_own_after_nodes() -> None:
    tracker = NodeTracker(nid(1))
    assert not track(tracker, event([], [nid(2)]))
    assert not tracker.deleted
    assert track(tracker, event([make_node(1)], [nid(3)]))
    assert not tracker.deleted
    # Its node and its tombstone in one event: nodes first, so it ends deleted.
    ev = event([make_node(1, address="d")], [nid(1)])
    assert tracker.to_decode(ev) is None
    assert tracker.apply(ev, None)
    assert tracker.deleted


def test_tracker_tombstone_before_the_node_was_seen() -> None:
    tracker = NodeTracker(nid(1))
    assert track(tracker, event([make_node(2)], [nid(1)]))
    assert tracker.deleted
    assert tracker.node is None


# --- Property tests -----------------------------------------------------------------------

POOL_IDS = 5  # node indexes 1..POOL_IDS; POOL_IDS + 1 is never put (an unknown id)


def _variants(index: int) -> list[bytes]:
    base = make_node(index)
    return [
        bytes(base),
        bytes(make_node(index, state=NodeState.NEW)),
        bytes(make_node(index, state=NodeState.DECOMMISSIONED)),
        bytes(make_node(index, address=f"192.168.0.{index}")),
        bytes(make_node(index, labels={"rack": "moved"})),
        # An unknown field: other bytes, an equal message.
        bytes(base) + b"\xf8\x06\x01",
        bytes(make_node(index, state=NodeState.NEW, address=f"192.168.1.{index}")),
    ]


POOL: dict[int, list[bytes]] = {index: _variants(index) for index in range(1, POOL_IDS + 1)}
VARIANTS = len(POOL[1])
DECODED: dict[bytes, Node] = {data: decode_node(data) for v in POOL.values() for data in v}


@dataclass(frozen=True)
class Put:
    index: int
    variant: int


@dataclass(frozen=True)
class Tombstone:
    index: int


@dataclass(frozen=True)
class Send:
    """One event: items in wire order, and whether it is marked last backlogged."""

    items: tuple[Put | Tombstone, ...]
    last: bool

    def wire(self) -> bytes:
        # Concatenated messages merge: this interleaves nodes and tombstones on the wire.
        parts = [
            encode_watch_event([POOL[item.index][item.variant]])
            if isinstance(item, Put)
            else encode_watch_event([], [nid(item.index)])
            for item in self.items
        ]
        if self.last:
            parts.append(encode_watch_event([], last_backlogged=True))
        return b"".join(parts)


@dataclass(frozen=True)
class Restart:
    pass


@dataclass(frozen=True)
class Take:
    """Take a batch for one follower (by index, modulo their number), or all if None.

    With ``fail_after`` set, the follower's filter or equals first raises after that
    many calls (if the batch needs that many), and then the batch is taken again.
    """

    follower: int | None
    fail_after: int | None = None


@dataclass(frozen=True)
class Join:
    kind: int


Op = Send | Restart | Take | Join

FOLLOWER_KINDS: list[tuple[NodeFilter | None, NodeEquals | None]] = [
    (None, None),
    (is_up, None),
    (None, same_address),
    (not_decommissioned, same_state),
]

puts = st.builds(Put, st.integers(1, POOL_IDS), st.integers(0, VARIANTS - 1))
tombstones = st.builds(Tombstone, st.integers(1, POOL_IDS + 1))
sends = st.builds(
    Send,
    st.lists(st.one_of(puts, puts, tombstones), max_size=6).map(tuple),
    st.booleans(),
)
takes = st.builds(
    Take, st.one_of(st.none(), st.integers(0, 7)), st.one_of(st.none(), st.integers(0, 3))
)
# Mostly events and batches; now and then a reconnect or a new follower.
ops: st.SearchStrategy[Op] = st.one_of(
    sends,
    sends,
    sends,
    takes,
    takes,
    takes,
    st.just(Restart()),
    st.builds(Join, st.integers(0, len(FOLLOWER_KINDS) - 1)),
)


def naive(state: dict[str, bytes], send: Send) -> dict[str, bytes]:
    """The reference: nodes in wire order (last wins), then tombstones."""
    result = dict(state)
    for item in send.items:
        if isinstance(item, Put):
            result[nid(item.index)] = POOL[item.index][item.variant]
    for item in send.items:
        if isinstance(item, Tombstone):
            result.pop(nid(item.index), None)
    return result


def differing(a: Mapping[str, bytes], b: Mapping[str, bytes]) -> set[str]:
    return {key for key in a.keys() | b.keys() if a.get(key) != b.get(key)}


@dataclass
class Subscriber:
    """One follower and what the test has seen of it."""

    view: FollowerView
    admit: NodeFilter
    equals: NodeEquals
    counter: Counter
    counted: bool
    custom_equals: bool
    replay: dict[str, Node] = field(default_factory=dict)
    snapshots: list[tuple[Mapping[str, Node], dict[str, Node]]] = field(default_factory=list)
    marked: set[str] = field(default_factory=set)
    resync_since_take: bool = False
    had_initial: bool = False


def subscribe(kind: int) -> Subscriber:
    admit, equals = FOLLOWER_KINDS[kind]
    counter = Counter()
    # The first kind keeps the engine's defaults; the others are counted.
    counted = admit is not None or equals is not None
    if not counted:
        view = FollowerView()
    else:
        view = FollowerView(
            counter.filter(admit or admit_all), counter.equals(equals or message_equals)
        )
    return Subscriber(
        view=view,
        admit=admit or admit_all,
        equals=equals or message_equals,
        counter=counter,
        counted=counted,
        custom_equals=equals is not None,
    )


def check_sorted_unique(batch: NodeBatch) -> None:
    new = ids_of(batch.new)
    updated = [current.id for _, current in batch.updated]
    deleted = ids_of(batch.deleted)
    for ids in (new, updated, deleted):
        assert ids == sorted(set(ids))
    assert [previous.id for previous, _ in batch.updated] == updated
    assert len(set(new) | set(updated) | set(deleted)) == len(new) + len(updated) + len(deleted)
    upserts = [current.id for _, current in batch.upserts()]
    assert upserts == sorted(new + updated)


def check_take(
    sub: Subscriber, cluster: Cluster, subscribers: list[Subscriber], fail_after: int | None = None
) -> None:
    before = sub.view.view
    admitted = {k: n for k, n in cluster.nodes.items() if sub.admit(n)}
    sub.counter.filter_calls = sub.counter.equals_calls = 0
    batch: NodeBatch | None = None
    taken = False
    if fail_after is not None and sub.counted:
        # A filter or equals that raises changes neither the view nor the pending
        # changes: the take that follows finds exactly the batch it would have found.
        pending = sub.view.has_pending
        sub.counter.fail_after = fail_after
        try:
            batch = sub.view.take_batch(cluster.nodes)
            taken = True  # it needed too few calls to fail
        except Boom:
            assert sub.view.view is before
            assert sub.view.has_pending == pending
            sub.counter.filter_calls = sub.counter.equals_calls = 0
        finally:
            sub.counter.fail_after = None
    if not taken:
        batch = sub.view.take_batch(cluster.nodes)
    # Cost: only the ids changed since the last batch are looked at.
    assert sub.counter.filter_calls <= len(sub.marked)
    assert sub.counter.equals_calls <= len(sub.marked)

    # The whole batch, as a full walk (the Go package's diff) would find it.
    before_ids, admitted_ids = set(before), set(admitted)
    expect_new = [admitted[k] for k in sorted(admitted_ids - before_ids)]
    expect_deleted = [before[k] for k in sorted(before_ids - admitted_ids)]
    expect_updated = [
        (before[k], admitted[k])
        for k in sorted(admitted_ids & before_ids)
        if before[k] is not admitted[k] and not sub.equals(before[k], admitted[k])
    ]
    view = sub.view.view
    if batch is None:
        assert sub.had_initial, "the first batch is always delivered"
        assert expect_new == []
        assert expect_deleted == []
        assert expect_updated == []
        assert same(view, before)
    else:
        if not sub.had_initial:
            assert batch.kind is BatchKind.INITIAL
        else:
            assert batch, "a later batch is only delivered when it holds a change"
            expected = BatchKind.RESYNC if sub.resync_since_take else BatchKind.LIVE
            assert batch.kind is expected
        sub.had_initial = True
        assert batch.view is view
        assert list(batch.new) == expect_new
        assert all(a is b for a, b in zip(batch.new, expect_new, strict=True))
        assert all(a is b for a, b in zip(batch.deleted, expect_deleted, strict=True))
        assert [(a.id, b.id) for a, b in batch.updated] == [(a.id, b.id) for a, b in expect_updated]
        assert all(
            a is c and b is d for (a, b), (c, d) in zip(batch.updated, expect_updated, strict=True)
        )
        check_sorted_unique(batch)
        # (b) Replaying the callbacks onto what was reported reproduces the view.
        replay = sub.replay
        for previous, current in batch.upserts():
            if previous is None:
                assert current.id not in replay, "a node already in the view is not new"
            else:
                assert replay[current.id] is previous, "previous is what was reported"
            replay[current.id] = current
        for gone in batch.deleted:
            assert replay.pop(gone.id) is gone
        sub.snapshots.append((batch.view, dict(batch.view)))

    # (a) The view is the filtered cluster (up to the follower's equals).
    assert set(view) == admitted_ids
    if sub.custom_equals:
        assert all(sub.equals(view[k], admitted[k]) for k in admitted)
    else:
        assert dict(view) == admitted
    # An unchanged node keeps the object the follower was given.
    assert all(view[k] is before[k] for k in before_ids & admitted_ids if k not in sub.marked)
    # (b) The replayed callbacks hold exactly the view's objects.
    assert set(sub.replay) == admitted_ids
    assert all(sub.replay[k] is view[k] for k in view)
    # (d) Every earlier batch's view is unchanged.
    for other in subscribers:
        for snapshot, copy in other.snapshots:
            assert len(snapshot) == len(copy)
            assert all(snapshot[k] is node for k, node in copy.items())
    sub.marked = set()
    sub.resync_since_take = False


def run(operations: list[Op]) -> None:
    cluster = Cluster()
    committed: dict[str, bytes] = {}  # the reference model of the committed cluster
    backlog: dict[str, bytes] | None = {}  # the backlog being collected, if any
    ever_committed = False
    subscribers = [subscribe(kind) for kind in range(len(FOLLOWER_KINDS))]

    for op in operations:
        if isinstance(op, Send):
            ev = split_watch_event(op.wire())
            assert cluster.to_decode(ev) == [
                data for node_id, data in ev.nodes if committed.get(node_id) != data
            ]
            delta = apply(cluster, ev)
            if backlog is not None:
                backlog = naive(backlog, op)
                if op.last:
                    changed = differing(committed, backlog)
                    kind = BatchKind.RESYNC if ever_committed else BatchKind.INITIAL
                    committed, backlog, ever_committed = backlog, None, True
                    assert delta is not None
                    assert delta.kind is kind
                else:
                    assert delta is None
            else:
                after = naive(committed, op)
                changed = differing(committed, after)
                committed = after
                if changed:
                    assert delta is not None
                    assert delta.kind is BatchKind.LIVE
                else:
                    assert delta is None
            if delta is not None:
                # Exactly the ids whose bytes changed, each once.
                assert len(delta.changed) == len(changed)
                assert set(delta.changed) == changed
                for sub in subscribers:
                    sub.view.mark(delta)
                    sub.marked.update(delta.changed)
                    sub.resync_since_take |= delta.kind is BatchKind.RESYNC
        elif isinstance(op, Restart):
            cluster.restart()
            backlog = {}
        elif isinstance(op, Join):
            sub = subscribe(op.kind)
            if cluster.ever_synced:
                sub.view.mark_all(cluster.nodes)
                sub.marked.update(cluster.nodes)
            subscribers.append(sub)
        elif cluster.ever_synced:  # Take; NodeWatch waits for the first sync
            chosen = (
                subscribers
                if op.follower is None
                else [subscribers[op.follower % len(subscribers)]]
            )
            for sub in chosen:
                check_take(sub, cluster, subscribers, op.fail_after)

        # (c) The committed cluster is the reference model, in bytes and in nodes.
        assert cluster.synced == (backlog is None)
        assert cluster.ever_synced == ever_committed
        assert dict(cluster.nodes) == {k: DECODED[v] for k, v in committed.items()}

    # Finally every follower catches up and agrees with the cluster.
    if cluster.ever_synced:
        for sub in subscribers:
            check_take(sub, cluster, subscribers)


PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(st.lists(ops, min_size=10, max_size=40))
def test_random_operations_keep_every_follower_consistent(operations: list[Op]) -> None:
    run(operations)


backlog_then_live = st.tuples(
    st.lists(st.builds(Send, st.lists(puts, max_size=4).map(tuple), st.just(False)), max_size=3),
    st.lists(puts, max_size=4).map(tuple),
    st.lists(st.one_of(sends, takes), max_size=20),
)


@PROPERTY_SETTINGS
@given(backlog_then_live)
def test_backlog_over_several_events_then_live_changes(
    case: tuple[list[Send], tuple[Put, ...], list[Send | Take]],
) -> None:
    # Mostly real Curator traffic: a split backlog of puts, then live events.
    head, last, rest = case
    run([*head, Send(last, True), Take(None), *rest])


@PROPERTY_SETTINGS
@given(
    st.lists(st.builds(Send, st.lists(puts, max_size=4).map(tuple), st.just(False)), max_size=3),
    st.lists(st.one_of(sends, takes), max_size=10),
    st.lists(st.builds(Send, st.lists(puts, max_size=4).map(tuple), st.just(False)), max_size=3),
    st.lists(puts, max_size=4).map(tuple),
)
def test_resync_after_restart(
    first: list[Send], live: list[Send | Take], second: list[Send], last: tuple[Put, ...]
) -> None:
    operations: list[Op] = [*first, Send((), True), Take(None), *live]
    operations += [Restart(), *second, Send(last, True)]
    run(operations)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.tuples(st.integers(1, 3), st.integers(0, VARIANTS - 1)), max_size=4),
            st.lists(st.integers(1, 3), max_size=2),
        ),
        max_size=8,
    )
)
def test_tracker_matches_a_naive_model(
    events: list[tuple[list[tuple[int, int]], list[int]]],
) -> None:
    tracker = NodeTracker(nid(2))
    state: bytes | None = None
    deleted = False
    for nodes, tombs in events:
        ev = event([POOL[index][variant] for index, variant in nodes], [nid(t) for t in tombs])
        mine = [POOL[index][variant] for index, variant in nodes if index == 2]
        changed = False
        if not deleted:
            if 2 in tombs:
                deleted = changed = True
            elif mine and mine[-1] != state:
                state, changed = mine[-1], True
        pending = tracker.to_decode(ev)
        assert pending == (state if changed and not deleted else None)
        assert tracker.apply(ev, None if pending is None else decode_node(pending)) == changed
        assert tracker.deleted == deleted
        assert tracker.node == (None if state is None else DECODED[state])


# --- Phase, held snapshots, backlog lookups ----------------------------------------------


def phase(cluster: Cluster) -> Phase:
    """The cluster's phase, read anew (mypy would keep an earlier narrowing)."""
    return cluster.phase


def state(lookup: BacklogLookup) -> bytes | None:
    """The lookup's state, read anew."""
    return lookup.state


def test_phase_goes_initial_backlog_live_resyncing_live() -> None:
    cluster = Cluster()
    assert phase(cluster) is Phase.INITIAL_BACKLOG
    cluster.restart()  # a reconnect before the first sync: still the initial backlog
    assert phase(cluster) is Phase.INITIAL_BACKLOG
    assert not cluster.ever_synced
    apply(cluster, event([make_node(1)], last=True))
    assert phase(cluster) is Phase.LIVE
    assert cluster.synced
    cluster.restart()
    assert phase(cluster) is Phase.RESYNCING
    assert (cluster.ever_synced, cluster.synced) == (True, False)
    delta = apply(cluster, event([make_node(1)], last=True))
    assert delta is not None
    assert delta.kind is BatchKind.RESYNC
    assert phase(cluster) is Phase.LIVE


def test_snapshots_held_by_callers_never_change() -> None:
    cluster = synced(*(make_node(i) for i in range(1, 200)))
    view = FollowerView()
    first_batch = view.take_batch(cluster.nodes)
    assert first_batch is not None
    held = [(cluster.nodes, dict(cluster.nodes)), (first_batch.view, dict(first_batch.view))]
    for step in range(1, 60):
        ev = event([make_node(step, address=f"10.9.0.{step}")], [nid(step + 100)])
        feed(cluster, [view], ev)
        batch = view.take_batch(cluster.nodes)
        assert batch is not None
        held += [(cluster.nodes, dict(cluster.nodes)), (batch.view, dict(batch.view))]
    for snapshot, copy in held:
        assert dict(snapshot) == copy


def test_backlog_lookup_keeps_an_unmentioned_node_and_a_tombstone_clears_it() -> None:
    lookup = BacklogLookup(nid(1))
    assert not lookup.feed(event([make_node(1)]))
    assert not lookup.feed(event([make_node(2)]))  # not mentioned: kept
    assert lookup.state == bytes(make_node(1))
    assert not lookup.feed(event([], [nid(1)]))
    assert state(lookup) is None
    assert lookup.feed(event([make_node(1, address="b")], last=True))
    assert lookup.complete
    assert lookup.state == bytes(make_node(1, address="b"))


def test_tracker_applies_a_lookup_and_a_lookup_without_the_node_deletes_it() -> None:
    tracker = NodeTracker(nid(1))
    first = event([make_node(1)])
    tracker.apply(first, decode_node(bytes(make_node(1))))
    found = BacklogLookup(nid(1))
    found.feed(event([make_node(1, address="b"), make_node(2)], last=True))
    pending = tracker.to_decode(found)
    assert pending == bytes(make_node(1, address="b"))
    assert tracker.apply(found, decode_node(pending))
    assert tracker.node == make_node(1, address="b")
    same = BacklogLookup(nid(1))
    same.feed(event([make_node(1, address="b")], last=True))
    assert tracker.to_decode(same) is None
    assert not tracker.apply(same, None)
    missing = BacklogLookup(nid(1))
    missing.feed(event([make_node(2)], last=True))
    assert tracker.to_decode(missing) is None
    assert tracker.apply(missing, None)
    assert tracker.deleted
