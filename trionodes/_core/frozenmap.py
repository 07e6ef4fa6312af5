"""An immutable mapping whose next version costs time in proportion to the change.

The engine hands out its node maps as snapshots (``Cluster.nodes``, each batch's
``view``) that must never change, while one event changes one node of perhaps
100,000. Copying a dict per event would cost time in proportion to the cluster.

So a :class:`FrozenMap` is a trie on the keys' hashes: ``depth`` levels of 32-way
lists, 5 bits of the hash each, over small dicts. A new version shares every list and
dict the change did not touch: setting one key copies ``depth`` lists of 32 and one
dict of a few dozen keys. (In CPython a copy's cost is mostly the reference counts it
raises, one cache miss each in a big heap; a flat table of sqrt(n) buckets raised
some 600 per change at 100,000 keys, this trie about 160.) The depth grows with the
map, so the dicts stay small. A published list or dict is never written again,
which is what makes every version a true snapshot.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar, overload

from .steps import Steps, run_steps

__all__ = ["FrozenMap", "MapBuilder"]

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")

_BITS = 5
_WIDTH = 1 << _BITS
_LOW = _WIDTH - 1
# Keys per dict that a trie of some depth is sized for.
_LEAF = 64


def _capacity(depth: int) -> int:
    return _LEAF << (_BITS * depth)


def _depth_for(size: int) -> int:
    depth = 0
    while size > 2 * _capacity(depth):
        depth += 1
    return depth


def _empty(depth: int) -> Any:
    """A trie of ``depth`` levels with no keys."""
    if depth == 0:
        return {}
    return [_empty(depth - 1) for _ in range(_WIDTH)]


def _leaves(root: Any, depth: int) -> Iterable[dict[Any, Any]]:
    nodes: Iterable[Any] = (root,)
    for _ in range(depth):
        nodes = itertools.chain.from_iterable(nodes)
    return nodes


class FrozenMap(Mapping[K, V]):
    """An immutable mapping; :meth:`mutate` makes its next version.

    Iteration order is unspecified.
    """

    __slots__ = ("_depth", "_len", "_root")

    # Never written once the map exists: versions share its lists and dicts.
    _root: Any
    _depth: int
    _len: int

    def __init__(self) -> None:
        """An empty map."""
        self._root = {}
        self._depth = 0
        self._len = 0

    def _leaf(self, key: object) -> dict[K, V]:
        node = self._root
        code = hash(key)
        for _ in range(self._depth):
            node = node[code & _LOW]
            code >>= _BITS
        leaf: dict[K, V] = node
        return leaf

    def __getitem__(self, key: K) -> V:
        """The value of ``key``.

        Raises:
            KeyError: ``key`` is not in the map.
        """
        return self._leaf(key)[key]

    @overload
    def get(self, key: K, /) -> V | None: ...
    @overload
    def get(self, key: K, default: V | D, /) -> V | D: ...
    def get(self, key: K, default: object = None) -> object:
        """The value of ``key``, or ``default`` when it is not in the map."""
        return self._leaf(key).get(key, default)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is in the map."""
        return key in self._leaf(key)

    def __iter__(self) -> Iterator[K]:
        """The keys, in no particular order."""
        return itertools.chain.from_iterable(_leaves(self._root, self._depth))

    def __len__(self) -> int:
        """The number of keys."""
        return self._len

    def __repr__(self) -> str:
        """``FrozenMap({...})``."""
        return f"FrozenMap({dict(self.items())!r})"

    def mutate(self) -> MapBuilder[K, V]:
        """A builder of the next version; this map never changes."""
        return MapBuilder(self)


class MapBuilder(Generic[K, V]):
    """Collects changes to a :class:`FrozenMap`; :meth:`finish` makes the new version.

    Each list and dict on a changed key's path is copied the first time a change
    touches it, so the map it came from (and every version already finished) stays
    as it was.
    """

    __slots__ = ("_base", "_len", "_root")

    def __init__(self, base: FrozenMap[K, V]) -> None:
        """Start from ``base``."""
        self._base = base
        # The trie being written: the base's root until the first change.
        self._root: Any = base._root
        self._len = base._len

    def _writable_leaf(self, key: K) -> dict[K, V]:
        """The dict of ``key``, copied (with its path) unless this builder made it."""
        base = self._base._root
        node = self._root
        if node is base:
            node = self._root = node.copy()
        code = hash(key)
        for _ in range(self._base._depth):
            index = code & _LOW
            code >>= _BITS
            base = base[index]
            child = node[index]
            if child is base:  # still shared with the base
                child = node[index] = child.copy()
            node = child
        leaf: dict[K, V] = node
        return leaf

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value of ``key`` with the changes so far, or ``default``."""
        node = self._root
        code = hash(key)
        for _ in range(self._base._depth):
            node = node[code & _LOW]
            code >>= _BITS
        value: V | None = node.get(key, default)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        """Map ``key`` to ``value``."""
        leaf = self._writable_leaf(key)
        if key not in leaf:
            self._len += 1
        leaf[key] = value

    def __delitem__(self, key: K) -> None:
        """Remove ``key``.

        Raises:
            KeyError: ``key`` is not in the map.
        """
        leaf = self._writable_leaf(key)
        del leaf[key]
        self._len -= 1

    def finish(self) -> FrozenMap[K, V]:
        """The new version. The builder may go on, from that version."""
        return run_steps(self.finish_steps())

    def finish_steps(self, chunk: int | None = None) -> Steps[FrozenMap[K, V]]:
        """:meth:`finish` in steps: re-spreading the keys over a deeper or shallower
        trie (when the map grew or shrank a lot) moves ``chunk`` keys per step (all
        in one when None). The builder must not be used until the steps end.
        """
        base = self._base
        if self._root is base._root:
            return base
        root = self._root
        depth = base._depth
        size = self._len
        # Re-spread only when the dicts hold twice too many or half too few keys on
        # average, so that a map whose size hovers near a boundary is not re-spread
        # again and again.
        if size > 2 * _capacity(depth) or (depth and size < _capacity(depth - 1) // 2):
            depth = _depth_for(size)
            root = _empty(depth)
            items = itertools.chain.from_iterable(
                leaf.items() for leaf in _leaves(self._root, base._depth)
            )
            # The old trie is read, never written, so pausing between keys is safe.
            for some in iter(lambda: list(itertools.islice(items, chunk)), []):
                for key, value in some:
                    node = root
                    code = hash(key)
                    for _ in range(depth):
                        node = node[code & _LOW]
                        code >>= _BITS
                    node[key] = value
                yield
        result: FrozenMap[K, V] = FrozenMap.__new__(FrozenMap)
        result._root = root
        result._depth = depth
        result._len = size
        self._base = result
        self._root = root
        return result
