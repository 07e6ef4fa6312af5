"""A faithful Python port of the Go watcher package's algorithm: the baseline.

After every event it walks the whole cluster: nodes passing Filter that the
follower does not know get New, known ones that Equals says changed get Updated,
then nodes the follower knew that are gone or filtered out get Deleted, then
BatchDone. New/Updated are made in sorted id order, then Deleted in sorted order.
Its follower map is never pruned (that is one of its faults, kept on purpose).
"""

from __future__ import annotations

from collections.abc import Callable

from trionodes import Node
from trionodes._proto.metropolis.node.core.curator.proto.api import WatchEvent


class GoStyleWatcher:
    """Cluster state plus one follower's view, updated the way the Go package does."""

    def __init__(
        self,
        admit: Callable[[Node], bool],
        equals: Callable[[Node, Node], bool],
        on_change: Callable[[str, Node], None],
    ) -> None:
        self.cluster: dict[str, Node] = {}
        self.follower: dict[str, Node] = {}
        self._admit = admit
        self._equals = equals
        self._on_change = on_change

    def handle(self, event: WatchEvent) -> None:
        """Apply one decoded event and run the full walk."""
        for node in event.nodes:
            self.cluster[node.id] = node
        for tombstone in event.node_tombstones:
            self.cluster.pop(tombstone.node_id, None)
        for node_id in sorted(self.cluster):
            node = self.cluster[node_id]
            if not self._admit(node):
                continue
            known = self.follower.get(node_id)
            if known is None:
                self._on_change("new", node)
            elif not self._equals(known, node):
                self._on_change("updated", node)
            self.follower[node_id] = node
        for node_id in sorted(self.follower):
            node = self.follower[node_id]
            current = self.cluster.get(node_id)
            if current is None or not self._admit(current):
                self._on_change("deleted", node)
        self._on_change("done", node)  # BatchDone after every event
