"""What a follower is, and the callback-based follower most programs need."""

from __future__ import annotations

import abc
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from ._core.engine import BatchKind
from ._proto.metropolis.node.core.curator.proto.api import Node

MaybeAwaitable = Awaitable[None] | None
"""What a callback returns: nothing (a plain function) or an awaitable (``async def``)."""


class Follower(Protocol):
    """Something that keeps a view of the cluster's nodes and acts on its changes.

    Subclass it and write the four callbacks that report changes to the view::

        class HostsFile(trionodes.Follower):
            def new(self, node): ...
            def updated(self, prev, node): ...
            def deleted(self, prev): ...
            def batch_done(self): ...

    ``new``, ``updated``, ``deleted`` and ``batch_done`` have no default: a follower
    that forgot one (most often ``deleted``) would silently keep a wrong view, so
    instantiating a subclass that lacks one raises :class:`TypeError`. ``filter``,
    ``equals`` and ``batch_started`` have defaults (every node, whole messages,
    nothing); override them to narrow the view or react to a batch's kind. An
    object that does not subclass :class:`Follower` must have all seven methods.

    Callbacks may be plain methods or ``async def``. An exception raised by any of
    them ends the watch and propagates to whoever started it; ``batch_done`` is then
    not called. Nodes passed in are never modified afterwards, so a follower may keep
    references to them (and must not modify them either).
    """

    __slots__ = ()

    def filter(self, node: Node) -> bool:
        """Whether ``node`` belongs in this follower's view; by default, every node does."""
        return True

    def equals(self, a: Node, b: Node) -> bool:
        """Whether two states of a node are the same for this follower.

        When it returns True, no ``updated`` call is made and the view keeps ``a``.
        By default the whole messages are compared.
        """
        return a == b

    def batch_started(self, kind: BatchKind) -> MaybeAwaitable:
        """A batch begins; called with its :class:`BatchKind` before its first call.

        A ``RESYNC`` batch holds what changed while the watch was reconnecting or
        relisting; its deletions were seen as absence, so ``prev`` is the last state
        the follower saw, not a final state. By default, nothing is done.
        """
        return None

    @abc.abstractmethod
    def new(self, node: Node) -> MaybeAwaitable:
        """``node`` entered the view: it appeared, or started passing ``filter``."""

    @abc.abstractmethod
    def updated(self, prev: Node, node: Node) -> MaybeAwaitable:
        """A node in the view changed from ``prev`` to ``node``."""

    @abc.abstractmethod
    def deleted(self, prev: Node) -> MaybeAwaitable:
        """A node left the view (deleted, or filtered out); ``prev`` is its last state."""

    @abc.abstractmethod
    def batch_done(self) -> MaybeAwaitable:
        """A batch of the calls above is complete; apply it now.

        Called after every batch that made at least one call, and once after the
        initial cluster even when it was empty.
        """


@typing.final
@dataclass(frozen=True, slots=True)
class SimpleFollower(Follower):
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
