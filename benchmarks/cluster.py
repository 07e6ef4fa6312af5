"""Deterministic serialized clusters and updates, shared by the server and the clients.

Encoding a node with betterproto2 takes over 100 µs, so a 100,000-node backlog or a
million updates cannot be encoded node by node. Instead a few thousand realistic
nodes from :func:`trionodes.testing.make_node` (status, version, roles, labels,
clusternet) are encoded once, each with a fixed-width ``generation`` label, and every
node state is made from one of them by writing its id and generation into the bytes.
Node ``index`` at generation ``g`` is always the same bytes, in every process.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

import anyio

import trionodes
from trionodes import Node
from trionodes._core.wire import encode_watch_event
from trionodes.testing import make_node

# Distinct node bodies to draw from: enough variety, quick to encode (~0.3 s).
_BODIES = 2_000
_GENERATION_WIDTH = 10
# Where the generation goes; never sent (not a valid label character).
_MARKER = b"~" * _GENERATION_WIDTH
# A real Curator keeps backlog messages near or under 2 MiB.
BACKLOG_MESSAGE_BYTES = 2 * 1024 * 1024


def node_id(index: int) -> str:
    """The id of node ``index`` (the ids ``make_node`` gives, all 43 characters)."""
    return f"metropolis-{index:032x}"


@functools.cache
def _bodies() -> tuple[tuple[bytes, bytes, bytes], ...]:
    """Each body split around its id and its generation: (head, middle, tail)."""
    bodies = []
    for index in range(_BODIES):
        labels = {"rack": f"r{index % 16}", "zone": f"z{index % 3}", "generation": _MARKER.decode()}
        data = bytes(make_node(index, controller=index % 50 == 0, labels=labels))
        ident = node_id(index).encode()
        # betterproto2 writes fields in number order: the id comes first.
        assert data[2 : 2 + len(ident)] == ident
        assert data.count(_MARKER) == 1
        mark = data.index(_MARKER)
        bodies.append((data[:2], data[2 + len(ident) : mark], data[mark + _GENERATION_WIDTH :]))
    return tuple(bodies)


def node_bytes(index: int, generation: int = 0) -> bytes:
    """The serialized state of node ``index`` at ``generation``."""
    head, middle, tail = _bodies()[index % _BODIES]
    return b"".join((head, node_id(index).encode(), middle, b"%010d" % generation, tail))


def generation_of(node: Node) -> int:
    """The generation of a decoded node."""
    assert node.labels is not None
    return int({pair.key: pair.value for pair in node.labels.pairs}["generation"])


def backlog_events(generations: Sequence[int]) -> list[bytes]:
    """Serialized backlog events for nodes ``0..len(generations)-1`` at those generations.

    Each event stays near or under 2 MiB; the last one is marked last backlogged.
    """
    events = []
    chunk: list[bytes] = []
    size = 0
    for index, generation in enumerate(generations):
        data = node_bytes(index, generation)
        if chunk and size + len(data) > BACKLOG_MESSAGE_BYTES:
            events.append(encode_watch_event(chunk))
            chunk, size = [], 0
        chunk.append(data)
        size += len(data) + 3  # the field's tag and length
    events.append(encode_watch_event(chunk, last_backlogged=True))
    return events


def update_target(step: int, nodes: int) -> int:
    """Which node the ``step``-th live update changes: they cycle through the cluster."""
    return step * 7_919 % nodes if nodes % 7_919 else step % nodes


def updates(nodes: int, count: int, first_generation: int = 1) -> Iterator[bytes]:
    """``count`` one-node update events; update ``step`` sets its node's generation
    to ``first_generation + step``."""
    for step in range(count):
        yield encode_watch_event([node_bytes(update_target(step, nodes), first_generation + step)])


def end_marker(nodes: int) -> bytes:
    """The event that ends a stream of updates: node ``nodes`` (a new node) appears."""
    return encode_watch_event([node_bytes(nodes)])


class EndFollower(trionodes.Follower):
    """A follower that does nothing but notice the end marker of a ``nodes`` cluster.

    Every new state counts as a change for it (``equals`` is false), as for a
    follower acting on any change; comparing whole messages, the default, would add
    betterproto2's ``==`` (about 10 µs a node) to each event.
    """

    def __init__(self, nodes: int) -> None:
        self.end = anyio.Event()
        self._end_id = node_id(nodes)

    def equals(self, a: Node, b: Node) -> bool:
        return False

    def new(self, node: Node) -> None:
        if node.id == self._end_id:
            self.end.set()

    def updated(self, prev: Node, node: Node) -> None:
        pass

    def deleted(self, prev: Node) -> None:
        pass

    def batch_done(self) -> None:
        pass
