"""Tests of trionodes._core.wire: splitting a WatchEvent at the protobuf wire level."""

from __future__ import annotations

import ast
import contextlib
import datetime
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trionodes._core.wire import RawEvent, node_id, split_watch_event
from trionodes._errors import ProtocolError
from trionodes._proto.metropolis.node.core.curator.proto.api import (
    Node,
    WatchEvent,
    WatchEventNodeTombstone,
    WatchEventProgress,
)
from trionodes._proto.metropolis.proto import common
from trionodes._proto.version import spec

# --- A tiny protobuf encoder for hand-built messages ------------------------------------


def varint(value: int) -> bytes:
    """Encode a varint; negative values are encoded as 64-bit two's complement.

    Args:
        value: The value, from -2**63 to 2**64-1.

    Returns:
        The varint's bytes.
    """
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    """Encode a field's tag.

    Args:
        number: The field number.
        wire_type: The wire type.

    Returns:
        The tag's bytes.
    """
    return varint(number << 3 | wire_type)


def ld(number: int, payload: bytes) -> bytes:
    """Encode a length-delimited field.

    Args:
        number: The field number.
        payload: The field's value.

    Returns:
        The field's bytes.
    """
    return tag(number, 2) + varint(len(payload)) + payload


def vi(number: int, value: int) -> bytes:
    """Encode a varint field.

    Args:
        number: The field number.
        value: The field's value.

    Returns:
        The field's bytes.
    """
    return tag(number, 0) + varint(value)


def s(number: int, text: str) -> bytes:
    """Encode a string field.

    Args:
        number: The field number.
        text: The string.

    Returns:
        The field's bytes.
    """
    return ld(number, text.encode())


# --- Strategies for random WatchEvents built with the generated classes -----------------

ids = st.text(max_size=40)  # Includes "" and any non-surrogate code point.
texts = st.text(max_size=12)
blobs = st.binary(max_size=24)


def maybe(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """Draw from ``strategy`` or ``None``, to leave an optional field unset.

    Args:
        strategy: The strategy for a set field.

    Returns:
        The combined strategy.
    """
    return st.none() | strategy


roles_st = st.builds(
    common.NodeRoles,
    kubernetes_worker=maybe(st.just(common.NodeRolesKubernetesWorker())),
    consensus_member=maybe(
        st.builds(
            common.NodeRolesConsensusMember,
            ca_certificate=blobs,
            peer_certificate=blobs,
            initial_crl=blobs,
            peers=st.lists(
                st.builds(common.NodeRolesConsensusMemberPeer, name=texts, url=texts),
                max_size=3,
            ),
        )
    ),
    kubernetes_controller=maybe(st.just(common.NodeRolesKubernetesController())),
)

version_st = st.builds(
    spec.Version,
    release=maybe(
        st.builds(
            spec.VersionRelease,
            major=st.integers(-(2**63), 2**63 - 1),
            minor=st.integers(0, 1000),
            patch=st.integers(0, 1000),
        )
    ),
    git_information=maybe(
        st.builds(
            spec.VersionGitInformation,
            commit_hash=texts,
            commits_since_release=st.integers(0, 2**64 - 1),
            build_tree_state=st.sampled_from(list(spec.VersionGitInformationBuildTreeState)),
        )
    ),
)

status_st = st.builds(
    common.NodeStatus,
    external_address=texts,
    timestamp=maybe(
        st.datetimes(
            min_value=datetime.datetime(1970, 1, 1),
            max_value=datetime.datetime(2200, 1, 1),
            timezones=st.just(datetime.UTC),
        )
    ),
    running_curator=maybe(
        st.builds(common.NodeStatusRunningCurator, port=st.integers(-(2**31), 2**31 - 1))
    ),
    version=maybe(version_st),
    boot_id=blobs,
)

clusternet_st = st.builds(
    common.NodeClusterNetworking,
    wireguard_pubkey=texts,
    prefixes=st.lists(st.builds(common.NodeClusterNetworkingPrefix, cidr=texts), max_size=3),
)

labels_st = st.builds(
    common.NodeLabels,
    pairs=st.lists(st.builds(common.NodeLabelsPair, key=texts, value=texts), max_size=3),
)

node_st = st.builds(
    Node,
    id=ids,
    roles=maybe(roles_st),
    status=maybe(status_st),
    clusternet=maybe(clusternet_st),
    state=st.sampled_from(list(common.NodeState)),
    labels=maybe(labels_st),
)

# Any int32 enum value: 0, 1 and values this schema does not know (open enum).
progress_st = st.sampled_from([0, 1]) | st.integers(-(2**31), 2**31 - 1)

event_st = st.builds(
    WatchEvent,
    nodes=st.lists(node_st, max_size=6),
    progress=progress_st.map(WatchEventProgress),
    node_tombstones=st.lists(st.builds(WatchEventNodeTombstone, node_id=ids), max_size=4),
)


# --- Round trips ------------------------------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(event_st)
def test_round_trip_matches_betterproto(event: WatchEvent) -> None:
    data = bytes(event)
    raw = split_watch_event(data)
    parsed = WatchEvent.parse(data)

    assert [i for i, _ in raw.nodes] == [n.id for n in parsed.nodes]
    assert list(raw.tombstones) == [t.node_id for t in parsed.node_tombstones]
    assert raw.last_backlogged == (parsed.progress == WatchEventProgress.LAST_BACKLOGGED)
    assert len(raw.nodes) == len(event.nodes)
    for (ident, blob), original in zip(raw.nodes, event.nodes, strict=True):
        assert type(blob) is bytes
        assert blob == bytes(original)
        assert Node.parse(blob) == original
        assert ident == original.id
        assert node_id(blob) == ident


@given(node_st)
def test_node_id_matches_betterproto(node: Node) -> None:
    data = bytes(node)
    assert node_id(data) == Node.parse(data).id == node.id


def test_empty_event() -> None:
    assert split_watch_event(b"") == RawEvent(nodes=(), tombstones=(), last_backlogged=False)


def test_empty_node_and_tombstone() -> None:
    raw = split_watch_event(ld(1, b"") + ld(3, b""))
    assert raw == RawEvent(nodes=(("", b""),), tombstones=("",), last_backlogged=False)
    assert node_id(b"") == ""


def test_node_bytes_are_copies() -> None:
    node = s(1, "n1") + vi(5, 3)
    data = ld(1, node) * 2
    for given_data in (data, bytearray(data), memoryview(data), memoryview(b"xx" + data)[2:]):
        raw = split_watch_event(given_data)
        assert raw.nodes == (("n1", node), ("n1", node))
        for _, blob in raw.nodes:
            assert type(blob) is bytes
    assert node_id(bytearray(node)) == node_id(memoryview(node)) == "n1"


def test_large_node_lengths() -> None:
    # Lengths of one, two and three varint bytes, at the boundaries.
    for size in (0, 1, 127, 128, 16383, 16384, 70000):
        node = s(1, "x" * size)
        raw = split_watch_event(ld(1, node) + ld(3, s(1, "y" * size)))
        assert raw.nodes == (("x" * size, node),)
        assert raw.tombstones == ("y" * size,)


# --- Field order, repetition, unknown fields --------------------------------------------


def test_fields_out_of_order() -> None:
    node_a = vi(5, 3) + ld(3, s(1, "10.0.0.1")) + s(1, "a")  # id last
    node_b = ld(6, ld(1, s(1, "k") + s(2, "v"))) + s(1, "b") + ld(2, b"")  # id in between
    data = vi(2, 1) + ld(3, s(1, "gone")) + ld(1, node_a) + ld(3, s(1, "gone2")) + ld(1, node_b)
    raw = split_watch_event(data)
    assert raw == RawEvent(
        nodes=(("a", node_a), ("b", node_b)), tombstones=("gone", "gone2"), last_backlogged=True
    )
    parsed = WatchEvent.parse(data)
    assert [Node.parse(b) for _, b in raw.nodes] == parsed.nodes


def test_repeated_scalars_last_wins() -> None:
    assert split_watch_event(vi(2, 1) + vi(2, 0)).last_backlogged is False
    assert split_watch_event(vi(2, 0) + vi(2, 1)).last_backlogged is True
    assert split_watch_event(vi(2, 1) + ld(1, b"") + vi(2, 2)).last_backlogged is False

    node = s(1, "first") + ld(3, s(1, "10.0.0.1")) + s(1, "second") + vi(5, 1) + s(1, "last")
    assert node_id(node) == "last" == Node.parse(node).id
    assert split_watch_event(ld(1, node)).nodes == (("last", node),)
    assert node_id(s(1, "a") + s(1, "")) == ""

    tombstone = s(1, "x") + s(1, "y")
    assert split_watch_event(ld(3, tombstone)).tombstones == ("y",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, False),
        (1, True),
        (2, False),
        (127, False),
        (1000, False),
        (-1, False),
        (-(2**31) + 1, False),
        (2**63, False),
        # An enum is an int32: the varint is truncated to its low 32 bits.
        (2**32 + 1, True),
        (2**64 - 2**32 + 1, True),
    ],
)
def test_progress_values(value: int, expected: bool) -> None:
    assert split_watch_event(vi(2, value)).last_backlogged is expected


UNKNOWN_FIELDS = [
    vi(4, 0),
    vi(7, 2**64 - 1),  # A 10-byte varint.
    tag(8, 1) + b"\xff" * 8,  # fixed64
    tag(9, 5) + b"\xff" * 4,  # fixed32
    ld(10, b"\x0a\x03abc"),  # A length-delimited field that looks like a node inside.
    ld(100, b"x" * 300),  # A two-byte tag and a two-byte length.
    vi(2**29 - 1, 5),  # The highest field number.
    ld(16, b""),
]


@pytest.mark.parametrize("unknown", UNKNOWN_FIELDS)
def test_unknown_fields_are_skipped(unknown: bytes) -> None:
    node = unknown + s(1, "n") + unknown + vi(5, 3) + unknown
    tombstone = unknown + s(1, "t") + unknown
    data = unknown + ld(1, node) + unknown + vi(2, 1) + unknown + ld(3, tombstone) + unknown
    assert split_watch_event(data) == RawEvent(
        nodes=(("n", node),), tombstones=("t",), last_backlogged=True
    )
    assert node_id(node) == "n"


def test_known_field_with_wrong_wire_type_is_skipped() -> None:
    # As in protobuf's reference implementations, such a field is an unknown field.
    data = vi(1, 5) + ld(2, b"\x01") + tag(3, 5) + b"abcd" + vi(2, 1)
    assert split_watch_event(data) == RawEvent(nodes=(), tombstones=(), last_backlogged=True)
    assert node_id(vi(1, 7) + tag(1, 1) + b"12345678") == ""
    assert node_id(s(1, "n") + vi(1, 7)) == "n"


def test_non_minimal_varints_are_accepted() -> None:
    node = b"\x8a\x00" + b"\x81\x80\x00" + b"n"  # Tag 10 and length 1, both padded.
    data = b"\x8a\x00" + bytes([0x80 | len(node), 0x00]) + node + b"\x90\x00" + b"\x81\x00"
    assert split_watch_event(data) == RawEvent(
        nodes=(("n", node),), tombstones=(), last_backlogged=True
    )


def test_node_id_does_not_look_into_sub_messages() -> None:
    # The sub-messages are garbage; only the node's top level is walked.
    garbage = b"\x0b\xff\xff\x0a\x7f"
    node = s(1, "n") + ld(2, garbage) + ld(3, garbage) + ld(6, b"\xff" * 100_000)
    assert node_id(node) == "n"
    assert split_watch_event(ld(1, node)).nodes == (("n", node),)


# --- Malformed input --------------------------------------------------------------------

MALFORMED = {
    "truncated tag varint": (b"\x80", r"truncated tag varint at offset 0"),
    "truncated progress varint": (vi(2, 1) + b"\x10\x80\x80", r"truncated .*varint at offset 3"),
    "truncated unknown varint": (b"\x20\xff", r"truncated .*varint at offset 1"),
    "missing length": (b"\x0a", r"truncated .*length varint at offset 1"),
    "truncated length varint": (b"\x1a\x80", r"truncated .*length varint at offset 1"),
    "length past end": (ld(1, b"") + b"\x0a\x05abc", r"field 1 at offset 2 .*5 bytes.*only 3"),
    "tombstone length past end": (b"\x1a\x81\x01" + b"x" * 100, r"field 3 at offset 0"),
    "unknown length past end": (b"\x22\x02a", r"field 4 at offset 0"),
    "fixed64 past end": (tag(4, 1) + b"1234567", r"field 4 at offset 0 needs 8 bytes"),
    "fixed32 past end": (tag(4, 5) + b"123", r"field 4 at offset 0 needs 4 bytes"),
    "start group": (tag(1, 3) + tag(1, 4), r"field 1 at offset 0 .*group"),
    "end group": (vi(2, 1) + tag(9, 4), r"field 9 at offset 2 .*group"),
    "wire type 6": (tag(5, 6), r"field 5 at offset 0 .*invalid wire type 6"),
    "wire type 7": (tag(5, 7), r"invalid wire type 7"),
    "field number 0": (b"\x00\x00", r"field number 0 at offset 0"),
    "field number 0, length-delimited": (vi(2, 1) + b"\x02\x00", r"field number 0 at offset 2"),
    "field number 0, padded tag": (b"\x80\x00\x00", r"field number 0 at offset 0"),
    "field number too large": (vi(2**29, 1), r"field number 536870912 at offset 0"),
    "11-byte varint": (b"\x10" + b"\xff" * 10 + b"\x01", r"offset 1 is longer than 10 bytes"),
    "11-byte padded varint": (b"\x10" + b"\x80" * 10 + b"\x00", r"longer than 10 bytes"),
    "varint over 64 bits": (b"\x10" + b"\xff" * 9 + b"\x02", r"offset 1 overflows 64 bits"),
    "invalid UTF-8 node id": (ld(1, ld(1, b"ok\xff")), r"field 1 at offset 2 .*UTF-8.*offset 6"),
    "invalid UTF-8 tombstone": (ld(3, ld(1, b"\xc3\x28")), r"field 1 at offset 2 .*UTF-8"),
    "surrogate in id": (ld(1, ld(1, "\ud800".encode("utf-8", "surrogatepass"))), r"UTF-8"),
    "overwritten invalid id": (ld(1, ld(1, b"\xff") + s(1, "ok")), r"UTF-8"),
    # Errors inside a node are reported at their offset in the whole event.
    "node field past node end": (ld(1, b"\x1a\x05abc") + b"xy", r"field 3 at offset 2 .*5 bytes"),
    "node truncated varint": (vi(2, 0) + ld(1, s(1, "n") + b"\x28\x80"), r"offset 8"),
    "group in node": (ld(1, s(1, "n") + tag(2, 3)), r"field 2 at offset 5 .*group"),
    "field 0 in node": (ld(1, b"\x00\x01"), r"field number 0 at offset 2"),
    "group in tombstone": (ld(3, tag(7, 4)), r"field 7 at offset 2 .*group"),
}


@pytest.mark.parametrize(("data", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_event(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        split_watch_event(data)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (b"\x0a", r"truncated .*varint at offset 1"),
        (b"\x0a\x03ab", r"field 1 at offset 0 needs 3 bytes but only 2 remain"),
        (s(1, "n") + b"\x1a\xff\xff\x03", r"field 3 at offset 3 needs 65535 bytes"),
        (b"\x0a\x01\xff", r"field 1 at offset 0 is not valid UTF-8"),
        (s(1, "n") + b"\x13", r"group"),
        (b"\x00", r"field number 0"),
        (b"\x28" + b"\x80" * 10 + b"\x01", r"longer than 10 bytes"),
    ],
)
def test_malformed_node(node: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        node_id(node)


@settings(max_examples=1000)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_parse_or_raise_protocol_error(data: bytes) -> None:
    try:
        raw = split_watch_event(data)
    except ProtocolError:
        pass
    else:
        for ident, blob in raw.nodes:
            assert node_id(blob) == ident
    with contextlib.suppress(ProtocolError):
        node_id(data)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(event_st, st.data())
def test_corrupted_events_parse_or_raise_protocol_error(
    event: WatchEvent, data: st.DataObject
) -> None:
    blob = bytearray(bytes(event))
    if blob:
        for _ in range(data.draw(st.integers(1, 4))):
            index = data.draw(st.integers(0, len(blob) - 1))
            blob[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    for candidate in (bytes(blob), bytes(blob[:cut])):
        try:
            raw = split_watch_event(candidate)
        except ProtocolError:
            continue
        for ident, node in raw.nodes:
            assert node_id(node) == ident


def test_error_messages_are_short_and_say_where() -> None:
    for data, _ in MALFORMED.values():
        with pytest.raises(ProtocolError) as info:
            split_watch_event(data)
        message = str(info.value)
        assert re.search(r"offset \d+", message), message
        assert len(message) < 150, message


def test_no_async_or_grpc_imports() -> None:
    import trionodes._core.wire

    assert trionodes._core.wire.__file__ is not None
    tree = ast.parse(Path(trionodes._core.wire.__file__).read_text())
    modules: set[str] = set()
    for statement in ast.walk(tree):
        if isinstance(statement, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in statement.names)
        elif isinstance(statement, ast.ImportFrom) and statement.level == 0:
            assert statement.module is not None
            modules.add(statement.module.split(".")[0])
    assert not modules & {"trio", "anyio", "asyncio", "grpclib", "betterproto2"}
