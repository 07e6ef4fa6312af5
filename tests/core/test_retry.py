"""Tests of trionodes._core.retry: the policy and the pure reconnect state machine."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

import trionodes
from trionodes import CuratorError, StatusCode
from trionodes._core.retry import GiveUp, ReconnectState, Retry

LOST = trionodes.ConnectionLost("gone")
TLS_CLOSE = trionodes.ConnectionLost("closed right after the TLS handshake", maybe_tls=True)


def test_policy_backoff_grows_caps_and_jitters() -> None:
    policy = trionodes.RetryPolicy(initial_delay=1, max_delay=10, multiplier=3)
    caps = [policy.delay(n, uniform=lambda: 1.0) for n in range(1, 6)]
    assert caps == [1, 3, 9, 10, 10]
    assert policy.delay(3, uniform=lambda: 0.5) == 4.5
    assert policy.delay(10**6, uniform=lambda: 1.0) == 10  # no overflow in long outages
    draws = {policy.delay(4) for _ in range(50)}
    assert len(draws) > 1
    assert all(0 <= d <= 10 for d in draws)


@pytest.mark.parametrize(
    "settings",
    [
        {"initial_delay": 0},
        {"initial_delay": 2, "max_delay": 1},
        {"max_delay": float("inf")},
        {"multiplier": 0.5},
        {"reset_after": -1},
        {"backlog_timeout": 0},
        {"tls_closures": 0},
    ],
)
def test_policy_rejects_nonsense(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        trionodes.RetryPolicy(**settings)  # type: ignore[arg-type]


def test_policy_says_what_is_retried() -> None:
    policy = trionodes.RetryPolicy()
    assert policy.is_retryable(trionodes.ConnectionLost("gone"))
    assert policy.is_retryable(trionodes.ProtocolError("junk"))
    assert policy.is_retryable(CuratorError(StatusCode.UNAVAILABLE))
    assert policy.is_retryable(CuratorError(StatusCode.INTERNAL))
    assert not policy.is_retryable(CuratorError(StatusCode.PERMISSION_DENIED))
    assert not policy.is_retryable(trionodes.TLSError("bad certificate"))
    assert not policy.is_retryable(ValueError("a bug"))
    lenient = dataclasses.replace(policy, permanent_statuses=frozenset())
    assert lenient.is_retryable(CuratorError(StatusCode.PERMISSION_DENIED))


def retry(decision: Retry | GiveUp) -> Retry:
    assert isinstance(decision, Retry), decision
    return decision


def test_a_permanent_error_gives_up_with_that_error() -> None:
    state = ReconnectState(trionodes.RetryPolicy())
    denied = CuratorError(StatusCode.PERMISSION_DENIED)
    assert state.failed(denied, 0.0) == GiveUp(denied)


def test_backoff_steps_reset_only_after_reset_after_seconds_synced() -> None:
    policy = trionodes.RetryPolicy(initial_delay=1, max_delay=100, reset_after=60)
    state = ReconnectState(policy, uniform=lambda: 1.0)
    assert retry(state.failed(LOST, 0)).delay == 1
    assert retry(state.failed(LOST, 1)).delay == 2
    assert state.synced(10) == 2  # the outage that ended: two failed streams
    assert retry(state.failed(LOST, 69)) == Retry(4, 1)  # synced 59 s: no reset
    assert state.synced(100) == 1
    assert retry(state.failed(LOST, 160)) == Retry(1, 1)  # synced 60 s: reset
    assert state.synced(161) == 1
    assert state.synced(162) == 0


@given(
    st.lists(st.tuples(st.booleans(), st.floats(0, 1000)), max_size=40),
    st.floats(0, 0.999),
)
def test_delay_is_always_within_zero_and_max_delay(
    steps: list[tuple[bool, float]], draw: float
) -> None:
    policy = trionodes.RetryPolicy(initial_delay=0.5, max_delay=7, reset_after=5)
    state = ReconnectState(policy, uniform=lambda: draw)
    now = 0.0
    outage = 0
    for synced, wait in steps:
        now += wait
        if synced:
            assert state.synced(now) == outage
            outage = 0
        else:
            decision = retry(state.failed(LOST, now))
            outage += 1
            assert 0 <= decision.delay <= policy.max_delay
            assert decision.failures == outage


@given(st.integers(1, 6), st.integers(0, 10))
def test_tls_gives_up_after_exactly_tls_closures_in_a_row_before_any_message(
    limit: int, other_failures: int
) -> None:
    state = ReconnectState(trionodes.RetryPolicy(tls_closures=limit))
    for _ in range(other_failures):
        retry(state.failed(LOST, 0))
    for _ in range(limit - 1):
        retry(state.failed(TLS_CLOSE, 0))
    decision = state.failed(TLS_CLOSE, 0)
    assert isinstance(decision, GiveUp)
    assert isinstance(decision.error, trionodes.TLSError)
    assert str(decision.error).endswith(f"({limit} times in a row)")


def test_another_failure_breaks_the_tls_run_and_a_message_ends_it() -> None:
    state = ReconnectState(trionodes.RetryPolicy(tls_closures=2))
    retry(state.failed(TLS_CLOSE, 0))
    retry(state.failed(LOST, 0))
    retry(state.failed(TLS_CLOSE, 0))  # a new run of one
    state.received()
    for _ in range(10):
        retry(state.failed(TLS_CLOSE, 0))
