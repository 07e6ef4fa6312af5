"""Delivery: from a receiver's pending changes to what it is handed, counted once.

Every receiver of a watch gets its changes the same way: a follower fed by
:meth:`ClusterWatch.follow`, a :class:`NodeChanges` stream, and a :class:`NodeWatch`
iterated. The stream task marks changes pending and rings; the receiver's task
waits for a ring, turns what is pending into one batch (or one node state) when it
is ready for it, and counts it. A closed delivery raises :class:`WatchClosed`.

For followers, :func:`call_follower` then makes the callbacks of one batch.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel

from .._core.engine import NodeBatch
from .._errors import WatchClosed
from .._follower import Follower, MaybeAwaitable
from .._stats import Counters
from .doorbell import Doorbell

T = TypeVar("T")


class Delivery(Generic[T]):
    """Hands one receiver what is pending for it, one item at a time.

    Args:
        take: Turns the receiver's pending changes into the item to hand over, or
            returns None when nothing is pending or the changes change nothing for
            this receiver; it may take its time over checkpoints. It may raise to
            end the delivery (the one-node watch raises ``StopAsyncIteration`` once
            its node is deleted).
        counters: The watch's counters; each item handed over counts as a batch
            delivered.
    """

    def __init__(self, take: Callable[[], Awaitable[T | None]], counters: Counters) -> None:
        self._take = take
        self._counters = counters
        self._doorbell = Doorbell()
        # Why it was closed, and the error that ended the watch, if any.
        self._closed: tuple[str, BaseException | None] | None = None

    def ring(self) -> None:
        """Say that something may be pending: the receiver's task calls ``take`` again."""
        self._doorbell.ring()

    def close(self, reason: str, cause: BaseException | None = None) -> None:
        """Stop delivering: :meth:`next`, waiting now or called later, raises :class:`WatchClosed`.

        Args:
            reason: The message of the :class:`WatchClosed`.
            cause: Its ``__cause__``: the error that ended the watch, if any.

        Only the first close counts: a stream closed after its watch ended still
        says that the watch ended.
        """
        if self._closed is None:
            self._closed = (reason, cause)
        self._doorbell.close()

    async def next(self) -> T:
        """Wait until ``take`` gives an item, count it and return it.

        Raises:
            WatchClosed: The delivery was closed, before or while waiting.
        """
        while True:
            if self._closed is not None:
                reason, cause = self._closed
                raise WatchClosed(reason) from cause
            item = await self._take()
            if item is not None:
                self._counters.batches_delivered += 1
                return item
            # Closed while waiting: the loop raises WatchClosed above.
            with contextlib.suppress(anyio.EndOfStream):
                await self._doorbell.wait()


# Callbacks made between two checkpoints when all of them are plain functions, so a
# large initial batch neither starves other tasks nor delays a cancel for long.
_CALLS_PER_CHECKPOINT = 256


async def call_follower(follower: Follower, batch: NodeBatch) -> None:
    """Make the follower calls for one batch, in order: ``batch_started``, then
    ``new``/``updated`` in node id order, ``deleted``, and ``batch_done``."""
    calls = await _settle(follower.batch_started(batch.kind), 0)
    for prev, node in batch.upserts():
        result = follower.new(node) if prev is None else follower.updated(prev, node)
        calls = await _settle(result, calls)
    for prev in batch.deleted:
        calls = await _settle(follower.deleted(prev), calls)
    await _settle(follower.batch_done(), 0)


async def _settle(result: MaybeAwaitable, calls: int) -> int:
    """Await a callback's result if it is awaitable; return the plain calls since a checkpoint."""
    if result is not None and inspect.isawaitable(result):
        await result
        return 0
    calls += 1
    if calls >= _CALLS_PER_CHECKPOINT:
        await anyio.lowlevel.checkpoint()
        return 0
    return calls
