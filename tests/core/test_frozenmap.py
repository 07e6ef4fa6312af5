"""Tests of trionodes._core.frozenmap: versions are true snapshots, whatever follows."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trionodes._core.frozenmap import FrozenMap

# Sets and deletes of keys from a small pool, in batches, so maps grow past the sizes
# where the trie deepens (129 keys, then 4,097) and shrink back.
_KEYS = st.one_of(st.integers(0, 5_000), st.text(max_size=3))
_Op = tuple[bool, object, int]
_BATCH = st.lists(st.tuples(st.booleans(), _KEYS, st.integers()), max_size=400)


@settings(max_examples=60, deadline=None)
@given(st.lists(_BATCH, max_size=12))
def test_every_version_stays_as_it_was_finished(batches: list[list[_Op]]) -> None:
    current: FrozenMap[object, int] = FrozenMap()
    model: dict[object, int] = {}
    versions: list[tuple[FrozenMap[object, int], dict[object, int]]] = [(current, {})]
    for batch in batches:
        builder = current.mutate()
        for is_set, key, value in batch:
            if is_set:
                builder[key] = value
                model[key] = value
            elif key in model:
                del builder[key]
                del model[key]
            assert builder.get(key) == model.get(key)
        current = builder.finish()
        versions.append((current, dict(model)))
        # Every version held so far still reads as it did.
        for version, expected in versions:
            assert len(version) == len(expected)
            assert dict(version.items()) == expected
            for key, value in expected.items():
                assert key in version
                assert version[key] == value


def test_a_builder_goes_on_from_the_version_it_finished() -> None:
    builder = FrozenMap[str, int]().mutate()
    builder["a"] = 1
    first = builder.finish()
    builder["a"] = 2
    builder["b"] = 3
    second = builder.finish()
    assert dict(first) == {"a": 1}
    assert dict(second) == {"a": 2, "b": 3}


def test_keys_with_equal_hashes_are_kept_apart() -> None:
    builder = FrozenMap[int, str]().mutate()
    # hash(-1) == hash(-2) in CPython; multiples of 2**20 share their low 20 bits.
    keys = [-1, -2, *(n << 20 for n in range(300))]
    for key in keys:
        builder[key] = str(key)
    snapshot = builder.finish()
    del builder[-1]
    assert snapshot[-1] == "-1"
    assert snapshot[-2] == "-2"
    assert -1 not in builder.finish()
    assert sorted(snapshot) == sorted(keys)


def test_deleting_a_missing_key_raises_and_changes_nothing() -> None:
    base = FrozenMap[str, int]()
    builder = base.mutate()
    builder["a"] = 1
    with pytest.raises(KeyError):
        del builder["b"]
    assert dict(builder.finish()) == {"a": 1}
    assert len(base) == 0


def test_an_unchanged_builder_gives_back_the_same_map() -> None:
    base = FrozenMap[str, int]()
    assert base.mutate().finish() is base
    assert base.get("x", 5) == 5
    assert repr(base) == "FrozenMap({})"
