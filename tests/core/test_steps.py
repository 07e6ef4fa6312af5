"""Stepwise commit and diff: the same results as in one go, and nothing seen half-done.

``Cluster.apply_steps``, ``FollowerView.take_batch_steps`` and
``MapBuilder.finish_steps`` let the watch layer checkpoint inside the steps that
cost time in proportion to the whole cluster. Here one twin runs every operation in
one go and the other one step at a time, with the smallest chunks; between two
steps the stepped twin must still show exactly the state from before the operation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trionodes._core.engine import (
    BatchKind,
    Cluster,
    ClusterDelta,
    FollowerView,
    NodeBatch,
    decode_nodes,
)
from trionodes._core.frozenmap import FrozenMap
from trionodes._core.steps import Steps
from trionodes._core.wire import encode_watch_event, split_watch_event
from trionodes.testing import make_node

POOL = 6
VARIANTS = 3
RAW = {
    (index, variant): bytes(make_node(index, address=f"10.0.{index}.{variant}"))
    for index in range(POOL)
    for variant in range(VARIANTS)
}


def nid(index: int) -> str:
    node_id: str = make_node(index).id
    return node_id


@dataclass(frozen=True)
class Send:
    puts: tuple[tuple[int, int], ...]
    tombstones: tuple[int, ...]
    last: bool


@dataclass(frozen=True)
class Restart:
    pass


@dataclass(frozen=True)
class Take:
    # Steps the stepped twin runs before abandoning the diff; None runs them all.
    abandon_after: int | None


class Abandon(Exception):
    """Stops a stepped diff part way."""


OPS = st.one_of(
    st.builds(
        Send,
        st.lists(st.tuples(st.integers(0, POOL - 1), st.integers(0, VARIANTS - 1)), max_size=5).map(
            tuple
        ),
        st.lists(st.integers(0, POOL - 1), max_size=2).map(tuple),
        st.booleans(),
    ),
    st.just(Restart()),
    st.builds(Take, st.one_of(st.none(), st.integers(1, 4))),
)


def step_through(steps: Steps[object], check: Callable[[], None]) -> object:
    """Run ``steps`` one at a time, calling ``check()`` between two; return the result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
        check()


def committed_unchanged(cluster: Cluster) -> Callable[[], None]:
    """A check that the committed state of ``cluster`` is still what it is now."""
    before, phase = cluster.nodes, cluster.phase

    def check() -> None:
        assert cluster.nodes is before
        assert cluster.phase is phase

    return check


class ViewUnchanged:
    """A check that a view is still what it is now; raises Abandon at its nth call."""

    def __init__(self, view: FollowerView, abandon_after: int | None) -> None:
        self.view = view
        self.before = view.view
        self.calls = 0
        self.abandon_after = abandon_after

    def __call__(self) -> None:
        assert self.view.view is self.before
        self.calls += 1
        if self.calls == self.abandon_after:
            raise Abandon


def summary(batch: NodeBatch | None) -> object:
    if batch is None:
        return None
    return (
        batch.kind,
        [node.id for node in batch.new],
        [(previous, node) for previous, node in batch.updated],
        [node.id for node in batch.deleted],
        dict(batch.view),
    )


def delta_summary(delta: ClusterDelta | None) -> object:
    return None if delta is None else (delta.kind, sorted(delta.changed))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, max_size=30))
def test_stepwise_commit_and_diff_match_one_go_and_show_nothing_half_done(
    operations: list[Send | Restart | Take],
) -> None:
    whole, stepped = Cluster(), Cluster()
    whole_view, stepped_view = FollowerView(), FollowerView()
    for op in operations:
        if isinstance(op, Restart):
            whole.restart()
            stepped.restart()
        elif isinstance(op, Send):
            puts = [RAW[put] for put in op.puts]
            event = split_watch_event(
                encode_watch_event(puts, [nid(i) for i in op.tombstones], last_backlogged=op.last)
            )
            expected = whole.apply(event, decode_nodes(whole.to_decode(event)))
            delta = step_through(
                stepped.apply_steps(event, decode_nodes(stepped.to_decode(event)), chunk=1),
                committed_unchanged(stepped),
            )
            assert isinstance(delta, ClusterDelta | None)
            assert delta_summary(delta) == delta_summary(expected)
            assert dict(stepped.nodes) == dict(whole.nodes)
            assert stepped.phase is whole.phase
            if expected is not None:
                assert delta is not None
                whole_view.mark(expected)
                stepped_view.mark(delta)
        elif whole.ever_synced:
            view_before = stepped_view.view
            steps = stepped_view.take_batch_steps(stepped.nodes, chunk=1)
            try:
                batch = step_through(steps, ViewUnchanged(stepped_view, op.abandon_after))
            except Abandon:
                # An abandoned diff is as if it had never started.
                steps.close()
                assert stepped_view.view is view_before
                continue
            assert isinstance(batch, NodeBatch | None)
            assert summary(batch) == summary(whole_view.take_batch(whole.nodes))
            assert dict(stepped_view.view) == dict(whole_view.view)


def pending(view: FollowerView) -> bool:
    """``has_pending`` (read through a call, which mypy does not narrow)."""
    return view.has_pending


def synced_pair() -> tuple[Cluster, FollowerView]:
    cluster, view = Cluster(), FollowerView()
    event = split_watch_event(
        encode_watch_event([RAW[i, 0] for i in range(POOL)], [], last_backlogged=True)
    )
    delta = cluster.apply(event, decode_nodes(cluster.to_decode(event)))
    assert delta is not None
    view.mark(delta)
    assert view.take_batch(cluster.nodes) is not None
    return cluster, view


def live(cluster: Cluster, puts: Iterable[tuple[int, int]]) -> ClusterDelta:
    event = split_watch_event(encode_watch_event([RAW[put] for put in puts], []))
    delta = cluster.apply(event, decode_nodes(cluster.to_decode(event)))
    assert delta is not None
    return delta


def test_changes_marked_during_a_diff_wait_for_the_next_batch() -> None:
    cluster, view = synced_pair()
    view.mark(live(cluster, [(0, 1), (1, 1)]))
    steps = view.take_batch_steps(cluster.nodes, chunk=1)
    next(steps)
    # Node 2 changes while the diff runs: not in this batch, in the next.
    view.mark(live(cluster, [(2, 1)]))
    batch = step_through(steps, lambda: None)
    assert isinstance(batch, NodeBatch)
    assert [current.id for _, current in batch.updated] == sorted([nid(0), nid(1)])
    following = view.take_batch(cluster.nodes)
    assert following is not None
    assert [current.id for _, current in following.updated] == [nid(2)]


def test_an_abandoned_diff_gives_its_changes_back_merged_with_a_resync() -> None:
    cluster, view = synced_pair()
    view.mark(live(cluster, [(0, 1)]))
    steps = view.take_batch_steps(cluster.nodes, chunk=1)
    next(steps)
    assert not view.has_pending
    # A resync commits meanwhile: the LIVE changes taken come back as part of a RESYNC.
    cluster.restart()
    event = split_watch_event(
        encode_watch_event(
            [RAW[0, 1]] + [RAW[i, 2] for i in range(1, POOL - 1)], [], last_backlogged=True
        )
    )
    resync = cluster.apply(event, decode_nodes(cluster.to_decode(event)))
    assert resync is not None
    view.mark(resync)
    steps.close()
    assert pending(view)
    batch = view.take_batch(cluster.nodes)
    assert batch is not None
    assert batch.kind is BatchKind.RESYNC
    assert [current.id for _, current in batch.updated] == [nid(i) for i in range(POOL - 1)]
    assert [node.id for node in batch.deleted] == [nid(POOL - 1)]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 9_000), st.integers(0, 9_000), st.integers(1, 3_000))
def test_stepwise_finish_matches_finish_across_a_respread(
    first: int, second: int, chunk: int
) -> None:
    # 4,097 keys and more deepen the trie, fewer than half of a level shrink it.
    base: FrozenMap[int, int] = FrozenMap()
    builder = base.mutate()
    for key in range(first):
        builder[key] = key
    start = builder.finish()
    whole, stepped = start.mutate(), start.mutate()
    for builder in (whole, stepped):
        for key in range(second, first):
            del builder[key]
        for key in range(first, second):
            builder[key] = -key
    expected = whole.finish()
    steps = stepped.finish_steps(chunk)
    result = step_through(steps, lambda: None)
    assert isinstance(result, FrozenMap)
    assert dict(result) == dict(expected)
    assert dict(start) == {key: key for key in range(first)}
