"""What a follower is, and the callback-based follower most programs need."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import anyio.lowlevel

from ._core.engine import BatchKind, NodeBatch
from ._proto.metropolis.node.core.curator.proto.api import Node

MaybeAwaitable = Awaitable[None] | None
"""What a callback returns: nothing (a plain function) or an awaitable (``async def``)."""


class Follower(Protocol):
    """Something that keeps a view of the cluster's nodes and acts on its changes.

    ``filter`` and ``equals`` define the view; the four callbacks report changes to
    it. Callbacks may be plain methods or ``async def``. An exception raised by any of
    them ends the watch and propagates to whoever started it; ``batch_done`` is then
    not called. Nodes passed in are never modified afterwards, so a follower may keep
    references to them (and must not modify them either).

    A follower may also have a ``batch_started(kind)`` method (optional, so not part
    of this protocol's required methods): it is called with the batch's
    :class:`BatchKind` before the first call of each batch. A ``RESYNC`` batch holds
    what changed while the watch was reconnecting; its deletions were seen as
    absence, so ``prev`` is the last state the follower saw, not a final state.
    """

    def filter(self, node: Node) -> bool:
        """Whether ``node`` belongs in this follower's view."""
        ...

    def equals(self, a: Node, b: Node) -> bool:
        """Whether two states of a node are the same for this follower.

        When it returns True, no ``updated`` call is made and the view keeps ``a``.
        """
        ...

    def new(self, node: Node) -> MaybeAwaitable:
        """``node`` entered the view: it appeared, or started passing ``filter``."""
        ...

    def updated(self, prev: Node, node: Node) -> MaybeAwaitable:
        """A node in the view changed from ``prev`` to ``node``."""
        ...

    def deleted(self, prev: Node) -> MaybeAwaitable:
        """A node left the view (deleted, or filtered out); ``prev`` is its last state."""
        ...

    def batch_done(self) -> MaybeAwaitable:
        """A batch of the calls above is complete; apply it now.

        Called after every batch that made at least one call, and once after the
        initial cluster even when it was empty.
        """
        ...


@dataclass(frozen=True, slots=True)
class SimpleFollower:
    """A :class:`Follower` built from optional callbacks.

    ``new`` and ``updated`` both call ``on_new_updated`` with the current node.
    Callbacks may be plain functions or ``async def``.

    Attributes:
        filter_fn: Admits a node into the view; None admits every node.
        equals_fn: Compares two states of a node; None compares whole messages.
        on_new_updated: Called with a node that entered the view or changed.
        on_deleted: Called with the last state of a node that left the view.
        on_batch_done: Called at the end of each batch.
        on_batch_started: Called with the batch's :class:`BatchKind` at the start of
            each batch (``RESYNC`` after a reconnect).
    """

    filter_fn: Callable[[Node], bool] | None = None
    equals_fn: Callable[[Node, Node], bool] | None = None
    on_new_updated: Callable[[Node], MaybeAwaitable] | None = None
    on_deleted: Callable[[Node], MaybeAwaitable] | None = None
    on_batch_done: Callable[[], MaybeAwaitable] | None = None
    on_batch_started: Callable[[BatchKind], MaybeAwaitable] | None = None

    def filter(self, node: Node) -> bool:
        """Apply ``filter_fn``, or admit every node."""
        return self.filter_fn is None or self.filter_fn(node)

    def equals(self, a: Node, b: Node) -> bool:
        """Apply ``equals_fn``, or compare whole messages."""
        return a == b if self.equals_fn is None else self.equals_fn(a, b)

    def new(self, node: Node) -> MaybeAwaitable:
        """Call ``on_new_updated``."""
        return None if self.on_new_updated is None else self.on_new_updated(node)

    def updated(self, prev: Node, node: Node) -> MaybeAwaitable:
        """Call ``on_new_updated`` with the current state."""
        return None if self.on_new_updated is None else self.on_new_updated(node)

    def deleted(self, prev: Node) -> MaybeAwaitable:
        """Call ``on_deleted``."""
        return None if self.on_deleted is None else self.on_deleted(prev)

    def batch_done(self) -> MaybeAwaitable:
        """Call ``on_batch_done``."""
        return None if self.on_batch_done is None else self.on_batch_done()

    def batch_started(self, kind: BatchKind) -> MaybeAwaitable:
        """Call ``on_batch_started``."""
        return None if self.on_batch_started is None else self.on_batch_started(kind)


# Callbacks made between two checkpoints when all of them are plain functions, so a
# large initial batch neither starves other tasks nor delays a cancel for long.
_CALLS_PER_CHECKPOINT = 256


async def deliver(follower: Follower, batch: NodeBatch) -> None:
    """Make the follower calls for one batch, in order, ending with ``batch_done``."""
    calls = 0
    batch_started = getattr(follower, "batch_started", None)
    if batch_started is not None:
        calls = await _settle(batch_started(batch.kind), calls)
    for prev, node in batch.upserts():
        result = follower.new(node) if prev is None else follower.updated(prev, node)
        calls = await _settle(result, calls)
    for prev in batch.deleted:
        calls = await _settle(follower.deleted(prev), calls)
    await _settle(follower.batch_done(), 0)


async def _settle(result: MaybeAwaitable, calls: int) -> int:
    if result is not None and inspect.isawaitable(result):
        await result
        return 0
    calls += 1
    if calls >= _CALLS_PER_CHECKPOINT:
        await anyio.lowlevel.checkpoint()
        return 0
    return calls
