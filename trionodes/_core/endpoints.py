"""Control-plane endpoints: parsing what a person writes, and learning them from nodes."""

from __future__ import annotations

import dataclasses
import ipaddress

from .wire import WIRE_LEN, WIRE_VARINT, read_field

# Every Metropolis control-plane node listens here.
DEFAULT_PORT = 7835

# Field numbers, from the wire schema: Node.status, NodeStatus.external_address,
# NodeStatus.running_curator, RunningCurator.port.
_NODE_STATUS = 3
_STATUS_EXTERNAL_ADDRESS = 1
_STATUS_RUNNING_CURATOR = 3
_RUNNING_CURATOR_PORT = 1


@dataclasses.dataclass(frozen=True, order=True)
class Endpoint:
    """Where a control-plane node listens.

    Attributes:
        host: A host name or an IP address (IPv6 without brackets).
        port: The TCP port.
    """

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class EndpointError(ValueError):
    """Text that is not an endpoint; the message says what to write instead."""


def parse_endpoint(text: str, default_port: int = DEFAULT_PORT) -> Endpoint:
    """Read ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``.

    Raises:
        EndpointError: With what is wrong and an example of what is right.
    """
    given = text.strip()
    example = f"write HOST or HOST:PORT, as 10.0.0.1:{default_port} or [fd00::1]:{default_port}"
    if not given:
        raise EndpointError(f"an empty endpoint: {example}")
    if "://" in given:
        raise EndpointError(f"{text!r} has a URL scheme: drop it ({example})")
    if given.startswith("["):
        host, bracket, rest = given[1:].partition("]")
        if not bracket or not host:
            raise EndpointError(f"{text!r} opens a bracket it does not close: {example}")
        if rest and not rest.startswith(":"):
            raise EndpointError(f"{text!r} has {rest!r} after the address: {example}")
        port_text = rest[1:] if rest else None
        _check_ipv6(text, host, example)
    elif given.count(":") > 1:
        raise EndpointError(
            f"{text!r} looks like an IPv6 address: put it in brackets, as [{given}] "
            f"or [{given}]:{default_port}"
        )
    else:
        host, colon, port_text_or_empty = given.partition(":")
        port_text = port_text_or_empty if colon else None
        if not host:
            raise EndpointError(f"{text!r} has no host: {example}")
        if any(char.isspace() or char in "/?#@" for char in host):
            raise EndpointError(f"{text!r} is not a host name or address: {example}")
    if port_text is None:
        return Endpoint(host, default_port)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise EndpointError(f"{text!r} has no valid port (1 to 65535) after the colon: {example}")
    return Endpoint(host, int(port_text))


def _check_ipv6(text: str, host: str, example: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise EndpointError(f"{text!r} has no IPv6 address in its brackets: {example}") from None


def curator_endpoint(node: bytes) -> Endpoint | None:
    """Where a node runs a Curator, read from its serialized ``Node``; None if it does not.

    Only the few fields needed are read: ``status.external_address`` and
    ``status.running_curator.port``.

    Raises:
        ProtocolError: The bytes are not a well-formed message.
    """
    status = _submessages(node, 0, len(node)).get(_NODE_STATUS)
    if status is None:
        return None
    fields = _submessages(node, *status)
    address, curator = fields.get(_STATUS_EXTERNAL_ADDRESS), fields.get(_STATUS_RUNNING_CURATOR)
    if address is None or curator is None or address[0] == address[1]:
        return None
    port = 0
    pos, end = curator
    while pos < end:
        tag, value, pos = read_field(node, pos, end)
        if tag == _RUNNING_CURATOR_PORT << 3 | WIRE_VARINT:
            port = value
    if not 0 < port < 65536:
        return None
    return Endpoint(node[address[0] : address[1]].decode("utf-8", "replace"), port)


def _submessages(buf: bytes, pos: int, end: int) -> dict[int, tuple[int, int]]:
    """Where each length-delimited field between ``pos`` and ``end`` lies (the last wins)."""
    found = {}
    while pos < end:
        tag, value, stop = read_field(buf, pos, end)
        if tag & 7 == WIRE_LEN:
            found[tag >> 3] = (value, stop)
        pos = stop
    return found
