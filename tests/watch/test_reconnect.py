"""Reconnect and resync against the fake Curator: what followers see across outages."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import ClassVar

import pytest
import trio
import trio.testing

import trionodes
from trionodes import BatchKind, CuratorError, NodeState, StatusCode
from trionodes._stats import Counters
from trionodes._watch.reconnect import Reconnector
from trionodes.testing import FakeCurator, make_node, open_fake_curator, settle

from .recorder import Recorder

FAST = trionodes.RetryPolicy(initial_delay=0.01, max_delay=0.02)
DOWN = CuratorError(StatusCode.UNAVAILABLE, "leader moved")
TIMEOUT = 10


def ids(*indexes: int) -> list[str]:
    return [make_node(i).id for i in indexes]


async def until(condition: Callable[[], bool]) -> None:
    """Wait (in real time: the streams are real) until ``condition`` holds."""
    with trio.fail_after(TIMEOUT):
        # Polled: the conditions span the client, the server and the time between.
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.005)


def refuse_calls(fake: FakeCurator) -> None:
    """Break every open call and refuse new ones, as a Curator without a leader does."""
    fake.authorize = lambda cert: DOWN
    fake.fail_streams(StatusCode.UNAVAILABLE, "leader moved")


async def test_resync_delivers_only_what_changed_as_one_batch(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(*(make_node(i) for i in range(1, 6)))
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: trionodes.watch_nodes(
                curator, recorder, retry=FAST, task_status=task_status
            )
        )
        recorder.take()
        refuse_calls(fake)
        await until(lambda: fake.streams_refused >= 2)
        # Meanwhile: 1 changes, 2 goes, 6 comes; 3, 4 and 5 stay as they were.
        fake.put(make_node(1, state=NodeState.DECOMMISSIONED), make_node(6))
        fake.delete(ids(2)[0])
        assert recorder.take() == []
        fake.authorize = None
        await until(lambda: len(recorder.kinds) == 2)
        await settle()
        assert recorder.take() == [
            ("updated", ids(1)[0]),
            ("new", ids(6)[0]),
            ("deleted", ids(2)[0]),
            ("done",),
        ]
        assert recorder.kinds == [BatchKind.INITIAL, BatchKind.RESYNC]
        assert recorder.updates[-1][1].state is NodeState.DECOMMISSIONED
        assert recorder.view == dict(fake.nodes)
        # Live again: a change after the resync is an ordinary live batch.
        fake.put(make_node(3, state=NodeState.NEW))
        await until(lambda: len(recorder.kinds) == 3)
        assert recorder.kinds[-1] is BatchKind.LIVE
        nursery.cancel_scope.cancel()


async def test_nothing_changed_means_no_batch_at_all(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(*(make_node(i) for i in range(1, 4)))
    async with (
        trionodes.open_node_watch(curator, retry=FAST) as watch,
        watch.open_changes() as changes,
    ):
        assert (await changes.receive()).initial
        fake.fail_streams()
        await until(lambda: watch.stats.reconnects == 1 and watch.stats.synced)
        with trio.move_on_after(0.1) as waited:
            await changes.receive()
        assert waited.cancelled_caught
        fake.put(make_node(4))
        batch = await changes.receive()
        assert batch.kind is BatchKind.LIVE
        assert [node.id for node in batch.new] == ids(4)


async def test_resync_batches_are_flagged_and_late_live_changes_merge_into_them(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(*(make_node(i) for i in range(1, 4)))
    async with trionodes.open_node_changes(curator, retry=FAST) as changes:
        await changes.receive()
        refuse_calls(fake)
        fake.delete(ids(3)[0])
        fake.authorize = None
        await until(lambda: fake.active_streams == 1)
        # The receiver was not reading: a live change after the resync joins the
        # pending resync batch, which stays a resync (it holds a deletion by absence).
        fake.put(make_node(2, state=NodeState.NEW))
        await settle()
        batch = await changes.receive()
        assert batch.resync
        assert [node.id for node in batch.deleted] == ids(3)
        assert [new.state for _, new in batch.updated] == [NodeState.NEW]


async def test_permanent_statuses_end_the_watch(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    for status in sorted(FAST.permanent_statuses):
        fake.authorize = lambda cert, status=status: CuratorError(status, "no")
        with pytest.raises(trionodes.CuratorError) as raised:
            await trionodes.watch_nodes(curator, trionodes.SimpleFollower(), retry=FAST)
        assert raised.value.status is status
        assert raised.value.details == "no"
    assert fake.streams_refused == len(FAST.permanent_statuses)


async def test_a_permanent_status_mid_watch_ends_it(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    with pytest.raises(trionodes.CuratorError) as raised:  # noqa: PT012
        async with trionodes.open_node_watch(curator, retry=FAST) as watch:
            await watch.wait_synced()
            fake.fail_streams(StatusCode.UNAUTHENTICATED, "certificate revoked")
            await trio.sleep_forever()
    assert raised.value.status is StatusCode.UNAUTHENTICATED
    assert watch.stats.last_error is raised.value
    assert fake.streams_opened == 1


async def test_connection_refused_at_start_is_retried() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: refused
        async with (
            trionodes.open_curator("127.0.0.1", port) as curator,
            trionodes.open_node_watch(curator, retry=FAST) as watch,
        ):
            await until(lambda: watch.stats.reconnects >= 2)
            stats = watch.stats
            assert isinstance(stats.last_error, trionodes.ConnectionLost)
            assert not stats.connected
            assert not stats.synced
            sock.close()  # free the port for the Curator
            async with open_fake_curator(port=port) as fake:
                fake.put(make_node(1))
                with trio.fail_after(TIMEOUT):
                    await watch.wait_synced()
                assert list(watch.nodes) == ids(1)


async def test_each_failure_is_logged_on_one_line(
    fake: FakeCurator, curator: trionodes.Curator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trionodes")
    async with trionodes.open_node_watch(curator, retry=FAST) as watch:
        await watch.wait_synced()
        refuse_calls(fake)
        await until(lambda: fake.streams_refused >= 1)
        fake.authorize = None
        await until(lambda: watch.stats.synced)
    failures = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(failures) >= 2
    first = failures[0].getMessage()
    assert first.startswith(f"watch of the cluster at {fake.host}:{fake.port} failed: ")
    assert "Curator answered UNAVAILABLE: leader moved; reconnecting in " in first
    assert first.endswith(" s (failure 1 in a row)")
    assert "\n" not in first
    assert failures[1].getMessage().endswith("(failure 2 in a row)")
    back = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert back[-1].endswith(f"is back after {len(failures)} failed streams")


async def test_stats_count_events_batches_and_reconnects(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(*(make_node(i) for i in range(1, 8)))  # three backlog events of three
    async with trionodes.open_node_watch(curator, retry=FAST) as watch:
        assert watch.stats == trionodes.WatchStats()
        async with trio.open_nursery() as nursery:
            await nursery.start(watch.follow, Recorder())
            await nursery.start(watch.follow, Recorder())
            stats = watch.stats
            assert (stats.events_received, stats.batches_delivered) == (3, 2)
            assert stats.connected
            assert stats.synced
            assert stats.reconnects == 0
            fake.fail_streams(StatusCode.INTERNAL, "oops")
            await until(lambda: watch.stats.reconnects == 1 and watch.stats.synced)
            fake.put(make_node(1, state=NodeState.NEW))
            await until(lambda: watch.stats.batches_delivered == 4)
            stats = watch.stats
            assert stats.events_received == 3 + 3 + 1
            assert isinstance(stats.last_error, trionodes.CuratorError)
            assert stats.last_error.status is StatusCode.INTERNAL
            nursery.cancel_scope.cancel()


async def test_watch_node_resumes_without_repeating_an_unchanged_node(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1), make_node(2))
    async with trionodes.watch_node(curator, ids(1)[0], retry=FAST) as watcher:
        assert (await watcher.__anext__()).state is NodeState.UP
        refuse_calls(fake)
        await until(lambda: fake.streams_refused >= 1)
        fake.authorize = None
        await until(lambda: watcher.stats.reconnects >= 1 and watcher.stats.synced)
        # Node 1 did not change: nothing to yield. Its next change is yielded once.
        fake.put(make_node(1, state=NodeState.NEW))
        assert (await watcher.__anext__()).state is NodeState.NEW
        assert watcher.stats.batches_delivered == 2


async def test_watch_node_reports_a_change_made_during_the_outage(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1))
    async with trionodes.watch_node(curator, ids(1)[0], retry=FAST) as watcher:
        await watcher.__anext__()
        refuse_calls(fake)
        fake.put(make_node(1, state=NodeState.NEW))
        fake.authorize = None
        assert (await watcher.__anext__()).state is NodeState.NEW


async def test_watch_node_reports_a_deletion_made_during_the_outage(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1), make_node(2))
    async with trionodes.watch_node(curator, ids(1)[0], retry=FAST) as watcher:
        last = await watcher.__anext__()
        refuse_calls(fake)
        fake.delete(ids(1)[0])
        fake.authorize = None
        with trio.fail_after(TIMEOUT):
            assert [node async for node in watcher] == []
        assert watcher.deleted
        assert watcher.node is last
    with trio.fail_after(TIMEOUT):
        await fake.wait_idle()


async def test_a_node_not_seen_yet_is_waited_for_across_outages(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    async with trionodes.watch_node(curator, ids(1)[0], retry=FAST) as watcher:
        await until(lambda: fake.active_streams == 1)
        fake.fail_streams()
        await until(lambda: watcher.stats.reconnects == 1 and fake.active_streams == 1)
        fake.put(make_node(1))
        assert (await watcher.__anext__()).id == ids(1)[0]


async def test_a_stream_that_ends_cleanly_is_reconnected(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(make_node(1))
    async with trionodes.open_node_watch(curator, retry=FAST) as watch:
        await watch.wait_synced()
        fake.fail_streams(StatusCode.OK)
        await until(lambda: watch.stats.reconnects == 1 and watch.stats.synced)
        assert isinstance(watch.stats.last_error, trionodes.ConnectionLost)
        assert str(watch.stats.last_error) == "the Curator ended the stream"


class StepRecorder(trionodes.RetryPolicy):
    """A policy that records the backoff step of each wait, and waits no time."""

    steps: ClassVar[list[int]] = []

    def delay(self, failures: int, uniform: Callable[[], float] = random.random) -> float:
        self.steps.append(failures)
        return 0.0


async def test_backoff_starts_over_after_a_healthy_stream(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trionodes")
    policy = StepRecorder(reset_after=60)
    reconnector = Reconnector(policy, None, Counters(), lambda: "test watch")
    # How long each stream stays synced before it fails; None: the watch ends.
    healthy_for = iter([0, 0, 61, 0, 59, 0, None])

    async def follow_stream() -> None:
        seconds = next(healthy_for)
        if seconds is None:
            return
        if seconds:
            reconnector.synced()
            await trio.sleep(seconds)
        raise trionodes.ConnectionLost("boom")

    await reconnector.run(follow_stream)
    # The stream healthy for 61 s resets the backoff; the one healthy for 59 s does not.
    assert policy.steps == [1, 2, 1, 2, 3, 4]
    # The log counts failures since the last synced stream.
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    counts = [int(message.rsplit("(failure ", 1)[1].split()[0]) for message in failures]
    assert counts == [1, 2, 1, 2, 1, 2]
    back = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert back == ["test watch is back after 2 failed streams"] * 2


async def test_likely_tls_closes_are_retried_for_ever_once_a_message_arrived(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = trionodes.RetryPolicy(initial_delay=0.01, max_delay=0.01, tls_closures=2)
    reconnector = Reconnector(policy, None, Counters(), lambda: "test watch")
    outcomes = iter(["message"] + ["close"] * 5 + [None])

    async def follow_stream() -> None:
        outcome = next(outcomes)
        if outcome is None:
            return
        if outcome == "message":
            reconnector.received()
        raise trionodes.ConnectionLost("closed right after the TLS handshake", maybe_tls=True)

    await reconnector.run(follow_stream)  # no TLSError: the settings worked once

    fresh = Reconnector(policy, None, Counters(), lambda: "test watch")

    async def always_closed() -> None:
        raise trionodes.ConnectionLost("closed right after the TLS handshake", maybe_tls=True)

    with pytest.raises(trionodes.TLSError, match=r"\(2 times in a row\)$"):
        await fresh.run(always_closed)
