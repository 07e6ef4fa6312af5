"""Tests of trionodes._core.decode: the fast Node decoder agrees with ``Node.parse``.

The promise is a subset: whatever the fast decoder accepts, ``Node.parse`` accepts
too and builds an identical object (same types, values and unknown fields at every
level); whatever ``Node.parse`` rejects, the fast decoder rejects with
``ProtocolError``. The few malformed inputs ``Node.parse`` lets through are rejected.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import betterproto2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trionodes._core.decode import parse_node
from trionodes._core.engine import decode_node
from trionodes._errors import ProtocolError
from trionodes._proto.metropolis.node.core.curator.proto.api import Node
from trionodes._proto.metropolis.proto import common
from trionodes.testing import make_node

from .test_wire import ld, tag, varint, vi

UTC = datetime.UTC

# --- Strategies built from the generated classes' field metadata ------------------------

_INT_RANGES = {
    betterproto2.TYPE_INT32: (-(2**31), 2**31 - 1),
    betterproto2.TYPE_INT64: (-(2**63), 2**63 - 1),
    betterproto2.TYPE_UINT64: (0, 2**64 - 1),
}


def unknown_fields(known: set[int]) -> st.SearchStrategy[bytes]:
    """Encoded fields whose numbers ``known`` lacks, of every wire type but groups."""
    number = st.integers(1, 2**29 - 1).filter(lambda n: n not in known)
    one = st.one_of(
        st.builds(lambda n, v: vi(n, v), number, st.integers(0, 2**64 - 1)),
        st.builds(lambda n, v: tag(n, 1) + v, number, st.binary(min_size=8, max_size=8)),
        st.builds(ld, number, st.binary(max_size=20)),
        st.builds(lambda n, v: tag(n, 5) + v, number, st.binary(min_size=4, max_size=4)),
    )
    return st.lists(one, max_size=2).map(b"".join)


def field_values(cls: type[Any], name: str) -> st.SearchStrategy[Any]:
    """Values of one field of ``cls``, including enum values the schema does not name."""
    meta = cls._betterproto.meta_by_field_name[name]
    kind = meta.proto_type
    if kind == betterproto2.TYPE_MESSAGE:
        if meta.unwrap is not None:  # a Timestamp, shown as a datetime
            values: st.SearchStrategy[Any] = st.datetimes(
                min_value=datetime.datetime(1, 1, 2),
                max_value=datetime.datetime(9999, 12, 30),
                timezones=st.just(UTC),
            )
        else:
            values = messages(cls._betterproto.cls_by_field[name])
        return st.lists(values, max_size=2) if meta.repeated else st.none() | values
    if kind == betterproto2.TYPE_ENUM:
        enum = cls._betterproto.cls_by_field[name]
        return st.sampled_from(list(enum)) | st.integers(-(2**31), 2**31 - 1).map(enum)
    if kind == betterproto2.TYPE_STRING:
        return st.text(max_size=12)
    if kind == betterproto2.TYPE_BYTES:
        return st.binary(max_size=12)
    low, high = _INT_RANGES[kind]
    return st.integers(low, high)


def messages(cls: type[Any]) -> st.SearchStrategy[Any]:
    """Messages of ``cls`` with every field drawn, and unknown fields at the end."""
    proto = cls._betterproto
    fields = {name: field_values(cls, name) for name in proto.meta_by_field_name}
    known = set(proto.field_name_by_number)

    def with_unknown(message: Any, unknown: bytes) -> Any:
        message._unknown_fields = unknown
        return message

    return st.builds(with_unknown, st.builds(cls, **fields), unknown_fields(known))


def top_level_fields(data: bytes) -> list[bytes]:
    """The encoded top-level fields of a message, in order."""
    return [parsed.raw for parsed in betterproto2.parse_fields(data)]


nodes = messages(Node)


@st.composite
def encoded_nodes(draw: st.DrawFn) -> bytes:
    """Serialized nodes, top-level fields shuffled and some repeated."""
    fields = top_level_fields(bytes(draw(nodes)))
    fields = draw(st.permutations(fields))
    repeats = draw(st.lists(st.sampled_from(fields), max_size=2)) if fields else []
    return b"".join(fields + repeats)


def assert_identical(a: Any, b: Any, path: str = "node") -> None:
    """``a`` and ``b`` have the same types and values, unknown fields included."""
    assert type(a) is type(b), path
    if isinstance(a, betterproto2.Message):
        # Every field, and the unknown fields kept as bytes.
        assert vars(a).keys() == vars(b).keys(), path
        for name, value in vars(a).items():
            assert_identical(value, vars(b)[name], f"{path}.{name}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{path}[{index}]")
    elif isinstance(a, datetime.datetime):
        assert (a, a.tzinfo) == (b, b.tzinfo), path
    else:
        assert a == b, path


# --- Agreement -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "node",
    [
        make_node(0),
        make_node(70_000, controller=True, consensus=True, curator_port=7835),
        make_node(3, state=common.NodeState.NEW, worker=False, labels={}),
        Node(),
    ],
)
def test_realistic_nodes_decode_identically(node: Node) -> None:
    data = bytes(node)
    assert_identical(parse_node(data), Node.parse(data))
    assert bytes(parse_node(data)) == data


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(encoded_nodes())
def test_valid_nodes_decode_identically(data: bytes) -> None:
    decoded = parse_node(data)
    assert_identical(decoded, Node.parse(data))


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """Valid nodes cut short, with bytes changed, inserted or removed, or noise."""
    data = bytearray(draw(encoded_nodes()))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["cut", "set", "insert", "remove"]))
        if action == "cut":
            del data[at:]
        elif action == "set" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=3))
        elif at < len(data):
            del data[at]
    return bytes(data)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(damaged() | st.binary(max_size=40))
def test_accepts_a_subset_of_what_node_parse_accepts(data: bytes) -> None:
    try:
        reference = Node.parse(data)
    except Exception:
        reference = None
    try:
        decoded = parse_node(data)
    except ProtocolError:
        with pytest.raises(ProtocolError, match="undecodable node"):
            decode_node(data)
        return
    assert reference is not None, "accepted what Node.parse rejects"
    assert_identical(decoded, reference)


# --- What Node.parse lets through and the fast decoder rejects ---------------------------

_ID = ld(1, b"metropolis-1")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(vi(1, 5), "field 1 at offset 0 has the wrong wire type 0", id="id-varint"),
        pytest.param(_ID + ld(5, b"\x03"), "field 5 .* wrong wire type 2", id="state-packed"),
        pytest.param(_ID + ld(3, ld(1, b"10.0.0.1")[:-2]), "field 1 .* needs", id="cut-status"),
        pytest.param(_ID + ld(2, b"\x0a\x05"), "field 1 .* needs 5 bytes", id="cut-role"),
        pytest.param(_ID + ld(6, b"\x00\x00"), "invalid field number 0", id="field-zero"),
        pytest.param(_ID + ld(6, tag(9, 3)), "group wire type 3", id="group"),
        pytest.param(_ID + b"\x28" + b"\xff" * 9 + b"\x7f", "overflows 64 bits", id="wide"),
    ],
)
def test_rejects_malformed_input_that_node_parse_lets_through(data: bytes, match: str) -> None:
    Node.parse(data)  # betterproto2 accepts it, with a damaged or wrongly typed result
    with pytest.raises(ProtocolError, match=match):
        parse_node(data)
    with pytest.raises(ProtocolError, match="undecodable node"):
        decode_node(data)


def test_invalid_utf8_in_a_submessage_is_a_protocol_error() -> None:
    data = _ID + ld(6, ld(1, ld(1, b"\xff")))
    with pytest.raises(UnicodeDecodeError):
        Node.parse(data)
    with pytest.raises(ProtocolError, match="not valid UTF-8"):
        parse_node(data)


def test_timestamp_out_of_range_is_a_protocol_error() -> None:
    data = _ID + ld(3, ld(2, vi(1, 2**62)))
    with pytest.raises(OverflowError):
        Node.parse(data)
    with pytest.raises(ProtocolError, match="out of range"):
        parse_node(data)


# --- Values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("varint_value", "port"),
    [(-7 & (2**64 - 1), -7), (2**32 + 5, 5), (2**31, -(2**31))],
)
def test_int32_reads_the_low_32_bits_as_signed(varint_value: int, port: int) -> None:
    data = _ID + ld(3, ld(3, vi(1, varint_value)))  # status.running_curator.port
    decoded = parse_node(data)
    assert decoded.status is not None
    assert decoded.status.running_curator is not None
    assert decoded.status.running_curator.port == port
    assert_identical(decoded, Node.parse(data))


def test_unknown_enum_values_are_kept_and_the_last_value_wins() -> None:
    data = _ID + vi(5, 99) + vi(5, 2**32 + 3)  # state twice, neither a NodeState
    decoded = parse_node(data)
    assert type(decoded.state) is common.NodeState
    assert decoded.state == 2**32 + 3  # read as an int64, as betterproto2 does
    assert_identical(decoded, Node.parse(data))


def test_unknown_fields_are_kept_in_place_order_at_every_level() -> None:
    before, after = vi(90, 1), ld(91, b"x")
    unknown_nested = tag(7, 5) + b"abcd"
    data = _ID + before + ld(6, ld(1, ld(1, b"k") + unknown_nested)) + after
    decoded = parse_node(data)
    assert decoded._unknown_fields == before + after
    assert decoded.labels is not None
    assert decoded.labels.pairs[0]._unknown_fields == unknown_nested
    assert_identical(decoded, Node.parse(data))


def test_a_repeated_submessage_keeps_the_last_like_node_parse() -> None:
    first = dataclasses.replace(make_node(1).status or common.NodeStatus(), boot_id=b"first")
    data = _ID + ld(3, bytes(first)) + ld(3, ld(1, b"10.9.9.9"))
    decoded = parse_node(data)
    assert decoded.status == common.NodeStatus(external_address="10.9.9.9")
    assert_identical(decoded, Node.parse(data))


def test_multi_byte_tags_and_lengths_are_read() -> None:
    long_label = "v" * 300
    data = varint(1 << 3 | 2) + varint(2) + b"id" + ld(6, ld(1, ld(2, long_label.encode())))
    padded_tag = b"\x8a\x80\x00" + varint(2) + b"xy"  # field 1, tag in three bytes
    decoded = parse_node(data + padded_tag)
    assert decoded.id == "xy"
    assert decoded.labels is not None
    assert decoded.labels.pairs[0].value == long_label
    assert_identical(decoded, Node.parse(data + padded_tag))
