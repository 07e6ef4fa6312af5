"""Split a Curator ``WatchEvent`` at the protobuf wire level, without decoding nodes.

Decoding a ``Node`` with betterproto2 is slow (about 110 µs), so trionodes keeps
each node's serialized bytes and decodes only the nodes whose bytes changed. This
module does the cheap part: it walks the top level of a ``WatchEvent`` and hands
back every node's bytes and id, the tombstoned ids and the progress marker.

Wire semantics follow the protobuf encoding specification:

* Varints are at most 10 bytes and 64 bits; a longer one, or a tenth byte that
  carries bits above bit 63, is an error.
* Unknown fields of any wire type except groups are skipped, and so are known
  fields that arrive with an unexpected wire type (as protobuf's reference
  implementations do). Groups (wire types 3 and 4), wire types 6 and 7, and field
  numbers outside 1..2**29-1 are errors.
* For a scalar field that appears several times, the last one wins.
* ``progress`` is an open enum decoded as ``int32``: only the value 1
  (``PROGRESS_LAST_BACKLOGGED``) counts as last backlogged.

Nodes are not decoded, but the top level of each node is walked (its fields are
hopped over by their lengths, never scanned byte by byte), both to find its id
with last-one-wins semantics and to reject a node whose framing is broken.

Every error is a :class:`~trionodes._errors.ProtocolError` whose message says what
was wrong and at which byte offset (counted from the start of the buffer given).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .._errors import ProtocolError

__all__ = [
    "WIRE_LEN",
    "WIRE_VARINT",
    "RawEvent",
    "encode_watch_event",
    "node_id",
    "read_field",
    "read_varint",
    "split_watch_event",
]

_MAX_FIELD_NUMBER = (1 << 29) - 1
_INT32_MASK = 0xFFFFFFFF
_LAST_BACKLOGGED = 1

# Single-byte tags (field number << 3 | wire type) of the fields this module reads.
_TAG_EVENT_NODE = 0x0A  # WatchEvent.nodes: field 1, length-delimited
_TAG_EVENT_PROGRESS = 0x10  # WatchEvent.progress: field 2, varint
_TAG_EVENT_TOMBSTONE = 0x1A  # WatchEvent.node_tombstones: field 3, length-delimited
_TAG_ID = 0x0A  # Node.id and NodeTombstone.node_id: field 1, length-delimited

WIRE_VARINT = 0
"""The wire type of a varint field."""
_WIRE_FIXED64 = 1
WIRE_LEN = 2
"""The wire type of a length-delimited field (strings, bytes, submessages)."""
_WIRE_START_GROUP = 3
_WIRE_END_GROUP = 4
_WIRE_FIXED32 = 5
# The wire types whose value is, or starts with, a varint.
_COUNTED = frozenset((WIRE_VARINT, WIRE_LEN))


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One WatchEvent split at the wire level.

    Attributes:
        nodes: ``(node id, the node's serialized bytes)`` for every node in the
            event, in wire order. The bytes are copies, independent of the
            buffer the event was split from.
        tombstones: The node ids of the event's tombstones, in wire order.
        last_backlogged: Whether the event's progress is
            ``PROGRESS_LAST_BACKLOGGED``.
    """

    nodes: tuple[tuple[str, bytes], ...]
    tombstones: tuple[str, ...]
    last_backlogged: bool


def read_varint(
    buf: bytes, pos: int, end: int, field: int, of_length: bool = False
) -> tuple[int, int]:
    """Decode the varint at ``pos``: the one varint reader of the core.

    Args:
        buf: The buffer.
        pos: Offset of the varint's first byte.
        end: Offset just past the enclosing message; the varint must end before it.
        field: The number of the field the varint belongs to, or 0 for a tag; for
            error messages (built only on error: formatting on every call cost
            the decoder a third of its speed).
        of_length: The varint is the length of a length-delimited field.

    Returns:
        The varint's value (0 to 2**64-1) and the offset just past it.

    Raises:
        ProtocolError: The varint is truncated, longer than 10 bytes, or does not
            fit in 64 bits.
    """
    if pos < end:
        byte = buf[pos]
        if byte < 0x80:  # most varints on the wire are one byte
            return byte, pos + 1
    what = "tag" if field == 0 else f"field {field} length" if of_length else f"field {field}"
    start = pos
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise ProtocolError(f"truncated {what} varint at offset {start}")
        byte = buf[pos]
        pos += 1
        if shift == 63:
            if byte & 0x80:
                raise ProtocolError(f"{what} varint at offset {start} is longer than 10 bytes")
            if byte > 1:
                raise ProtocolError(f"{what} varint at offset {start} overflows 64 bits")
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _read_tag(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode the tag at ``pos`` and check its field number.

    Returns:
        The tag (field number << 3 | wire type) and the offset just past it.

    Raises:
        ProtocolError: The varint is malformed, or the field number is 0 or
            above 2**29-1.
    """
    tag, after = read_varint(buf, pos, end, 0)
    number = tag >> 3
    if number == 0:
        raise ProtocolError(f"invalid field number 0 at offset {pos}")
    if number > _MAX_FIELD_NUMBER:
        raise ProtocolError(f"field number {number} at offset {pos} is out of range")
    return tag, after


def read_field(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Read the field at ``pos``: its tag, and its value or where its value lies.

    The walkers of this package (the splitter, the id reader, the decoder) call it
    once per field: one call reads the tag, the value's varint or length, and checks
    the framing.

    Args:
        buf: The buffer.
        pos: Offset of the field's tag.
        end: Offset just past the enclosing message.

    Returns:
        ``(tag, value, stop)``: the tag (field number << 3 | wire type); for a
        varint field its value, else the offset of the value's first byte; and
        the offset just past the field.

    Raises:
        ProtocolError: The tag or a varint is malformed, the field number is out
            of range, the wire type is a group or invalid, or the value runs past
            ``end``.
    """
    # The one inline copy of read_varint's common cases (a tag of one byte, a varint
    # or length of one or two bytes): every field of every node passes here, and
    # calling read_varint for them made splitting and decoding 40% slower.
    tag = buf[pos]
    if 8 <= tag < 0x80:
        start = pos + 1
    else:
        tag, start = _read_tag(buf, pos, end)
    wire_type = tag & 7
    if wire_type in _COUNTED:
        value = buf[start] if start < end else 0x80
        if value < 0x80:
            start += 1
        elif start + 1 < end and buf[start + 1] < 0x80:
            value = (value & 0x7F) | (buf[start + 1] << 7)
            start += 2
        else:
            value, start = read_varint(buf, start, end, tag >> 3, wire_type == WIRE_LEN)
        if wire_type == WIRE_VARINT:
            return tag, value, start
        size = value
    elif wire_type == _WIRE_FIXED64:
        size = 8
    elif wire_type == _WIRE_FIXED32:
        size = 4
    elif wire_type in (_WIRE_START_GROUP, _WIRE_END_GROUP):
        raise ProtocolError(
            f"field {tag >> 3} at offset {pos} uses the group wire type {wire_type},"
            " which is not supported"
        )
    else:
        raise ProtocolError(f"field {tag >> 3} at offset {pos} has invalid wire type {wire_type}")
    stop = start + size
    if stop > end:
        raise ProtocolError(
            f"field {tag >> 3} at offset {pos} needs {size} bytes"
            f" but only {max(end - start, 0)} remain"
        )
    return tag, start, stop


def _read_id(buf: bytes, pos: int, end: int) -> str:
    """Read field 1 (a string) of the message ``buf[pos:end]``, skipping other fields.

    This reads ``Node.id`` and ``WatchEvent.NodeTombstone.node_id``. Sub-messages
    are hopped over by their lengths, not descended into.

    Args:
        buf: The buffer.
        pos: Offset of the message's first byte.
        end: Offset just past the message.

    Returns:
        The last value of field 1, or ``""`` if the message has none.

    Raises:
        ProtocolError: The message's top level is malformed, or field 1 is not
            valid UTF-8.
    """
    ident = ""
    while pos < end:
        tag, start, stop = read_field(buf, pos, end)
        if tag == _TAG_ID:
            try:
                ident = buf[start:stop].decode()
            except UnicodeDecodeError as exc:
                raise ProtocolError(
                    f"field 1 at offset {pos} is not valid UTF-8: {exc.reason}"
                    f" at offset {start + exc.start}"
                ) from None
        pos = stop
    return ident


def split_watch_event(data: bytes | bytearray | memoryview) -> RawEvent:
    """Split a serialized ``WatchEvent`` into its nodes' bytes, tombstones and progress.

    Nodes are not decoded; only the top level of each node is walked, to find its
    id. Unknown fields are skipped.

    Args:
        data: The serialized ``WatchEvent``. A ``bytearray`` or ``memoryview`` is
            accepted too (and copied once).

    Returns:
        The split event.

    Raises:
        ProtocolError: ``data`` is not a valid serialized ``WatchEvent``, a node's
            top level is malformed, or an id is not valid UTF-8.
    """
    # Slices of bytes are bytes copies, which the nodes' bytes must be.
    data = data if type(data) is bytes else bytes(data)
    end = len(data)
    pos = 0
    nodes: list[tuple[str, bytes]] = []
    add_node = nodes.append
    tombstones: list[str] = []
    progress = 0
    while pos < end:
        tag, value, stop = read_field(data, pos, end)
        if tag == _TAG_EVENT_NODE:
            add_node((_read_id(data, value, stop), data[value:stop]))
        elif tag == _TAG_EVENT_TOMBSTONE:
            tombstones.append(_read_id(data, value, stop))
        elif tag == _TAG_EVENT_PROGRESS:
            progress = value
        pos = stop
    return RawEvent(
        nodes=tuple(nodes),
        tombstones=tuple(tombstones),
        # An enum is an int32 on the wire: wider varints are truncated to 32 bits.
        last_backlogged=(progress & _INT32_MASK) == _LAST_BACKLOGGED,
    )


def node_id(node: bytes | bytearray | memoryview) -> str:
    """Return the id of a serialized ``Node`` without decoding the node.

    Only the node's top-level fields are visited, each hopped over by its length;
    sub-messages are not looked into. Fields may come in any order; if the id
    appears more than once, the last one wins.

    Args:
        node: The serialized ``Node``. A ``bytearray`` or ``memoryview`` is
            accepted too.

    Returns:
        The node's id (field 1), or ``""`` if it has none.

    Raises:
        ProtocolError: The node's top level is malformed, or its id is not valid
            UTF-8.
    """
    buf = node if type(node) is bytes else bytes(node)
    return _read_id(buf, 0, len(buf))


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_watch_event(
    nodes: Iterable[bytes], tombstones: Iterable[str] = (), *, last_backlogged: bool = False
) -> bytes:
    """Serialize a ``WatchEvent`` from already serialized nodes (the inverse of the split).

    Servers use it to build large backlogs without re-encoding every node.

    Args:
        nodes: Serialized ``Node`` messages, in order.
        tombstones: Ids of deleted nodes.
        last_backlogged: Set ``progress`` to ``PROGRESS_LAST_BACKLOGGED``.
    """
    parts: list[bytes] = []
    for data in nodes:
        parts += (b"\x0a", _varint(len(data)), data)
    if last_backlogged:
        parts.append(b"\x10\x01")
    for ident in tombstones:
        encoded = ident.encode()
        parts += (b"\x1a", _varint(len(encoded) + 1 + len(_varint(len(encoded)))), b"\x0a")
        parts += (_varint(len(encoded)), encoded)
    return b"".join(parts)
