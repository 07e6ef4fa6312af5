"""A follower that records every call, for assertions on order and content."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import trionodes
from trionodes import Node


@dataclass
class Recorder(trionodes.Follower):
    """Records calls as tuples: ("new", id), ("updated", id), ("deleted", id), ("done",).

    Also keeps the follower's view, rebuilt from the calls alone.
    """

    admit: Callable[[Node], bool] = lambda node: True
    same: Callable[[Node, Node], bool] = lambda a, b: a == b
    calls: list[tuple[str, ...]] = field(default_factory=list)
    view: dict[str, Node] = field(default_factory=dict)
    updates: list[tuple[Node, Node]] = field(default_factory=list)
    kinds: list[trionodes.BatchKind] = field(default_factory=list)

    def filter(self, node: Node) -> bool:
        return self.admit(node)

    def equals(self, a: Node, b: Node) -> bool:
        return self.same(a, b)

    def new(self, node: Node) -> None:
        assert node.id not in self.view
        self.view[node.id] = node
        self.calls.append(("new", node.id))

    def updated(self, prev: Node, node: Node) -> None:
        assert self.view[node.id] is prev
        self.view[node.id] = node
        self.updates.append((prev, node))
        self.calls.append(("updated", node.id))

    def deleted(self, prev: Node) -> None:
        assert self.view.pop(prev.id) is prev
        self.calls.append(("deleted", prev.id))

    def batch_started(self, kind: trionodes.BatchKind) -> None:
        self.kinds.append(kind)

    def batch_done(self) -> None:
        self.calls.append(("done",))

    def take(self) -> list[tuple[str, ...]]:
        """The calls recorded since the last take."""
        calls, self.calls = self.calls, []
        return calls


def _check(follower: trionodes.Follower) -> None:
    """Type check: a Recorder is a Follower."""


_check(Recorder())
