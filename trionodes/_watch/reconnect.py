"""The reconnect loop: one stream after another, for as long as the watch lives.

Whether to retry, how long to wait and when to give up are the pure
:class:`~trionodes._core.retry.ReconnectState`'s decisions; this shell tells it what
happened and when, sleeps as it says, logs each failure on the ``trionodes`` logger
and keeps the watch's counters. It also ends a healthy stream when a relist is due
(see :func:`trionodes.open_node_watch`): the next stream starts at once, and its
backlog is compared with the view as after a reconnect.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio

from .._core.retry import GiveUp, ReconnectState, Retry, RetryPolicy
from .._errors import TrionodesError
from .._groups import sole_exception
from .._stats import Counters

_log = logging.getLogger("trionodes")

DEFAULT_RETRY = RetryPolicy()


class Reconnector:
    """Runs one stream after another, waiting between failures as the policy says.

    Args:
        policy: When and how to reconnect.
        relist: Seconds from a stream's sync to its relist; None never relists.
        counters: The watch's counters, kept up to date.
        what: Names the watch in log lines, as it is when the line is written (a
            cluster's leader may have moved).

    Raises:
        ValueError: ``relist`` is not a positive finite number or None.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        relist: float | None,
        counters: Counters,
        what: Callable[[], str],
    ) -> None:
        if relist is not None and not (relist > 0 and math.isfinite(relist)):
            raise ValueError(f"relist must be a positive number of seconds or None, not {relist}")
        self.policy = policy
        self._relist = relist
        self._counters = counters
        self._what = what
        self._state = ReconnectState(policy)
        # The current stream's scope from until_relist(), if it entered one.
        self._live: anyio.CancelScope | None = None

    def received(self) -> None:
        """Note that the current stream delivered a message."""
        self._counters.events_received += 1
        self._counters.connected = True
        self._state.received()

    def synced(self) -> None:
        """Note that the current stream's view is complete; the relist clock starts."""
        self._counters.synced = True
        now = anyio.current_time()
        outage = self._state.synced(now)
        if outage:
            _log.info("%s is back after %d failed streams", self._what(), outage)
        if self._relist is not None and self._live is not None:
            self._live.deadline = now + self._relist

    def until_relist(self) -> anyio.CancelScope:
        """A scope to follow the current stream in, cancelled when its relist is due.

        Due ``relist`` seconds after :meth:`synced`. A ``follow_stream`` that
        leaves the scope so and returns has the stream relisted.
        """
        self._live = anyio.CancelScope()
        return self._live

    async def run(self, follow_stream: Callable[[], Awaitable[None]]) -> None:
        """Call ``follow_stream`` until it returns (other than for a relist) or fails
        beyond retrying.

        Raises:
            TrionodesError: A fault that the policy does not retry.
        """
        counters = self._counters
        while True:
            self._live = None
            retry: Retry | None = None
            try:
                with sole_exception():
                    await follow_stream()
            except TrionodesError as error:
                decision = self._state.failed(error, anyio.current_time())
                if isinstance(decision, GiveUp):
                    counters.last_error = decision.error
                    _log.error("%s failed: %s; not retrying", self._what(), decision.error)
                    if decision.error is error:
                        raise
                    raise decision.error from error
                counters.last_error = error
                retry = decision
            finally:
                counters.connected = counters.synced = False
            if retry is not None:
                _log.warning(
                    "%s failed: %s; reconnecting in %.2f s (failure %d in a row)",
                    self._what(),
                    counters.last_error,
                    retry.delay,
                    retry.failures,
                )
                await anyio.sleep(retry.delay)
                counters.reconnects += 1
            elif self._relist_was_due():
                # Not a failure: no backoff, and the stream's health stands.
                counters.relists += 1
                _log.info(
                    "%s: relisting, to find deletions the stream may have missed", self._what()
                )
            else:
                return

    def _relist_was_due(self) -> bool:
        """Whether the stream that just ended left :meth:`until_relist` for its relist."""
        return self._live is not None and self._live.cancelled_caught

    @contextlib.asynccontextmanager
    async def running(
        self,
        follow_stream: Callable[[], Awaitable[None]],
        on_end: Callable[[BaseException | None], None],
    ) -> AsyncIterator[None]:
        """:meth:`run` in a background task for the duration of the block.

        Leaving the block cancels it. An error it raises ends the block and is
        raised as itself (not in a group).

        Args:
            follow_stream: What :meth:`run` calls.
            on_end: Called once the task has ended, with the exception that ended the
                block (None for a normal exit): the watch closes its deliveries.
        """
        error: BaseException | None = None
        try:
            with sole_exception():
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(self.run, follow_stream)
                    yield
                    tasks.cancel_scope.cancel()
        except BaseException as exc:
            error = exc
            raise
        finally:
            on_end(error)
