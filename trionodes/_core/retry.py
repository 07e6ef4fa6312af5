"""When a watch gives up on a stream, and how long it waits before the next one.

Pure: :class:`RetryPolicy` is the user's settings, :class:`ReconnectState` the
decisions a watch makes with them across streams. The watch's reconnect loop
(``_watch/reconnect.py``) tells the state what happened and when, and does the
waiting and the logging.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable

from .._errors import (
    ConnectionLost,
    CuratorError,
    ProtocolError,
    StatusCode,
    TLSError,
    TrionodesError,
)

# Statuses by which a Curator says the request itself is wrong: asking again cannot help.
_PERMANENT_STATUSES = frozenset(
    {
        StatusCode.PERMISSION_DENIED,
        StatusCode.UNAUTHENTICATED,
        StatusCode.INVALID_ARGUMENT,
        StatusCode.UNIMPLEMENTED,
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a watch reconnects after a fault: capped exponential backoff, full jitter.

    After the n-th failure in a row the watch waits a random time between 0 and
    ``min(max_delay, initial_delay * multiplier ** (n - 1))`` seconds, then opens a
    new stream and resyncs. A stream that stayed synced for ``reset_after`` seconds
    counts as healthy: the next failure is a first failure again.

    Retried: a broken or refused connection, a stream that ends, ``UNAVAILABLE`` and
    every other status not in ``permanent_statuses``, a keepalive timeout, and input
    that breaks the wire contract (:class:`ProtocolError`). Not retried:
    :class:`TLSError` and the statuses in ``permanent_statuses``; they end the watch.

    Attributes:
        initial_delay: The cap of the first wait, in seconds.
        max_delay: The largest cap, in seconds.
        multiplier: How much the cap grows with each failure in a row.
        reset_after: Seconds a stream must stay synced to reset the backoff.
        backlog_timeout: A stream whose backlog is incomplete and that sends nothing
            for this many seconds is given up as stalled; None waits forever. (Once
            synced, a quiet stream is normal: a dead connection is found by the
            connection's keepalive, see :func:`open_curator`.)
        permanent_statuses: Statuses that end the watch instead of being retried.
        tls_closures: How many connections in a row may be closed by the server
            during or right after the TLS handshake (in plain text: before it sent
            anything) before the watch ends with :class:`TLSError`, as long as the
            watch has never received a message. A server that rejects a client
            certificate without a TLS alert, or that speaks TLS to a plain-text
            client, looks like this; so does a server going down at that moment,
            hence a few tries. Once a message has arrived the settings are known to
            work, and such closes are retried like any outage.
    """

    initial_delay: float = 0.5
    max_delay: float = 30.0
    multiplier: float = 2.0
    reset_after: float = 60.0
    backlog_timeout: float | None = 60.0
    permanent_statuses: frozenset[StatusCode] = _PERMANENT_STATUSES
    tls_closures: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.initial_delay <= self.max_delay or not math.isfinite(self.max_delay):
            raise ValueError("need 0 < initial_delay <= max_delay, both finite")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if self.reset_after < 0:
            raise ValueError("reset_after must not be negative")
        if self.backlog_timeout is not None and self.backlog_timeout <= 0:
            raise ValueError("backlog_timeout must be positive (or None)")
        if self.tls_closures < 1:
            raise ValueError("tls_closures must be at least 1")

    def is_retryable(self, error: BaseException) -> bool:
        """Whether a watch that failed with ``error`` should reconnect."""
        if isinstance(error, CuratorError):
            return error.status not in self.permanent_statuses
        return isinstance(error, (ConnectionLost, ProtocolError))

    def delay(self, failures: int, uniform: Callable[[], float] = random.random) -> float:
        """Seconds to wait after ``failures`` failures in a row (1 for the first).

        Args:
            failures: How many streams in a row have failed, this one included.
            uniform: Returns a random number in [0, 1); for tests.
        """
        cap = self.initial_delay
        # Grow step by step up to max_delay: a power could overflow in a long outage.
        for _ in range(failures - 1):
            if cap >= self.max_delay:
                break
            cap *= self.multiplier
        return uniform() * min(self.max_delay, cap)


@dataclasses.dataclass(frozen=True, slots=True)
class Retry:
    """Wait, then open a new stream.

    Attributes:
        delay: Seconds to wait.
        failures: Failed streams since the last synced one, this one included (what
            the log counts; the backoff's step may be smaller).
    """

    delay: float
    failures: int


@dataclasses.dataclass(frozen=True, slots=True)
class GiveUp:
    """End the watch.

    Attributes:
        error: What to raise: the stream's own error, or a :class:`TLSError` made
            from it (to be raised from it).
    """

    error: TrionodesError


class ReconnectState:
    """The retry decisions of one watch, stream after stream.

    It takes the time as an argument and draws jitter from ``uniform``, so it holds
    no clock and no I/O.

    Args:
        policy: The settings.
        uniform: Returns a random number in [0, 1); for tests.
    """

    def __init__(self, policy: RetryPolicy, uniform: Callable[[], float] = random.random) -> None:
        self.policy = policy
        self._uniform = uniform
        self._synced_at: float | None = None
        # Failures in a row since the last healthy stream: the backoff's step.
        self._failures = 0
        # Failures since the last synced stream: what the log lines count.
        self._outage = 0
        self._tls_closures = 0
        self._ever_received = False

    def received(self) -> None:
        """Note that the current stream delivered a message."""
        self._ever_received = True

    def synced(self, now: float) -> int:
        """Note that the current stream's view became complete at ``now``.

        Returns:
            How many streams failed since the last synced one (0: no outage ended).
        """
        self._synced_at = now
        ended, self._outage = self._outage, 0
        return ended

    def failed(self, error: TrionodesError, now: float) -> Retry | GiveUp:
        """Decide what follows the current stream's failure with ``error`` at ``now``."""
        policy = self.policy
        if not policy.is_retryable(error):
            return GiveUp(error)
        tls_error = self._count_tls_closure(error)
        if tls_error is not None:
            return GiveUp(tls_error)
        healthy_since = self._synced_at
        if healthy_since is not None and now - healthy_since >= policy.reset_after:
            self._failures = 0
        self._synced_at = None
        self._failures += 1
        self._outage += 1
        return Retry(policy.delay(self._failures, self._uniform), self._outage)

    def _count_tls_closure(self, error: TrionodesError) -> TLSError | None:
        # Once this connection's settings have worked, such closes are the network's
        # doing (a proxy whose backend is down, say): retried like any outage.
        if not (isinstance(error, ConnectionLost) and error.maybe_tls) or self._ever_received:
            self._tls_closures = 0
            return None
        self._tls_closures += 1
        if self._tls_closures < self.policy.tls_closures:
            return None
        return TLSError(f"{error} ({self._tls_closures} times in a row)")
