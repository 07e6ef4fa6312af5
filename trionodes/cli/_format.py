"""Nodes as text and as JSON: pure functions from nodes to what the commands print.

Used by ``watch`` (lines and JSON records), ``top`` (table cells) and ``demo``
(blocks of lines per batch). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trionodes import Node

# Hex digits of a node id kept by short_id: enough to tell apart the nodes of a demo.
_ID_TAIL = 4
_ID_PREFIX = "metropolis-"


def short_id(node_id: str, keep: int = _ID_TAIL) -> str:
    """Shorten a node id for display, keeping its prefix and its last digits.

    Args:
        node_id: A node id such as ``metropolis-000…0001``.
        keep: How many trailing characters of the id's body to keep.

    Returns:
        The id with all but the end of its body elided (``metropolis-…0001``), or
        the id unchanged when its body is at most twice ``keep`` long.
    """
    prefix = _ID_PREFIX if node_id.startswith(_ID_PREFIX) else ""
    body = node_id[len(prefix) :]
    if len(body) <= 2 * keep:
        return node_id
    return f"{prefix}…{body[-keep:]}"


def full_id(node_id: str) -> str:
    """The node id unchanged (the ``id_text`` of ``trionodes watch``)."""
    return node_id


def count_text(nodes: int) -> str:
    """A number of nodes in words: ``1 node``, ``6 nodes``."""
    return f"{nodes} node{'' if nodes == 1 else 's'}"


def state_text(node: Node) -> str:
    """The node's state as a word, e.g. ``UP`` (``UNKNOWN(7)`` for unknown values)."""
    return node.state.name or f"UNKNOWN({int(node.state)})"


def address_of(node: Node) -> str | None:
    """The node's external address, or None when it has not reported one."""
    return (node.status.external_address if node.status else "") or None


def address_text(node: Node) -> str:
    """The node's external address, or ``-`` when it has none."""
    return address_of(node) or "-"


def role_names(node: Node) -> list[str]:
    """The node's roles as words, in the order ``worker``, ``controller``, ``consensus``."""
    roles = node.roles
    if roles is None:
        return []
    # A role is an empty message, which is false: test it against None.
    return [
        name
        for name, role in (
            ("worker", roles.kubernetes_worker),
            ("controller", roles.kubernetes_controller),
            ("consensus", roles.consensus_member),
        )
        if role is not None
    ]


def roles_text(node: Node) -> str:
    """The node's roles, comma-separated (``worker,controller,consensus``), or ``-``."""
    return ",".join(role_names(node)) or "-"


def _labels(node: Node) -> set[str]:
    return {f"{pair.key}={pair.value}" for pair in node.labels.pairs} if node.labels else set()


def _prefixes(node: Node) -> set[str]:
    return {prefix.cidr for prefix in node.clusternet.prefixes} if node.clusternet else set()


def _set_diff(name: str, before: set[str], after: set[str]) -> list[str]:
    if before == after:
        return []
    removed = [f"-{item}" for item in sorted(before - after)]
    added = [f"+{item}" for item in sorted(after - before)]
    return [" ".join([name, *removed, *added])]


def diff_nodes(prev: Node, node: Node) -> list[str]:
    """Describe what changed between two states of a node.

    Compares state, external address, roles, labels and cluster network prefixes.

    Args:
        prev: The earlier state.
        node: The later state.

    Returns:
        One phrase per changed field, e.g. ``address 10.0.0.3 -> 10.4.7.9`` or
        ``labels -rack=r1 +rack=r2``; ``other fields`` when only fields not shown
        changed; empty when the two are equal.
    """
    changes = [
        f"{name} {before} -> {after}"
        for name, text in (("state", state_text), ("address", address_text), ("roles", roles_text))
        if (before := text(prev)) != (after := text(node))
    ]
    changes += _set_diff("labels", _labels(prev), _labels(node))
    changes += _set_diff("prefixes", _prefixes(prev), _prefixes(node))
    if not changes and prev != node:
        changes.append("other fields")
    return changes


def format_new(node: Node, id_text: Callable[[str], str] = short_id) -> str:
    """One line for a node that appeared: ``+ id  STATE  address  roles``."""
    state, address = state_text(node), address_text(node)
    return f"+ {id_text(node.id)}  {state:<8} {address:<15} {roles_text(node)}"


def format_updated(prev: Node, node: Node, id_text: Callable[[str], str] = short_id) -> str:
    """One line for a node that changed: ``~ id  what changed``."""
    return f"~ {id_text(node.id)}  {', '.join(diff_nodes(prev, node))}"


def format_deleted(prev: Node, id_text: Callable[[str], str] = short_id) -> str:
    """One line for a node that left: ``- id  (was STATE address)``."""
    return f"- {id_text(prev.id)}  (was {state_text(prev)} {address_text(prev)})"


def format_header(number: int, nodes: int) -> str:
    """The line above a batch's changes.

    Args:
        number: The batch's number; the first (1) is the initial cluster.
        nodes: How many nodes the cluster has after the batch.
    """
    if number == 1:
        return f"initial cluster: {count_text(nodes)}"
    return f"batch {number}"


def node_record(node: Node) -> dict[str, Any]:
    """A node as ``trionodes watch --json`` prints it (see docs/cli.md).

    Returns:
        A JSON-ready dict with the keys ``id``, ``state`` (``UP``, ...), ``address``
        (None when unknown), ``roles`` (a list of ``worker``, ``controller``,
        ``consensus``), ``labels`` (an object), ``wireguard_pubkey`` (None when
        unset), ``prefixes`` (a list of CIDRs), ``curator_port`` (None when the
        node runs no Curator) and ``version`` (``major.minor.patch``, or None).
    """
    status, clusternet = node.status, node.clusternet
    release = status.version.release if status and status.version else None
    return {
        "id": node.id,
        "state": state_text(node),
        "address": address_of(node),
        "roles": role_names(node),
        "labels": {pair.key: pair.value for pair in node.labels.pairs} if node.labels else {},
        "wireguard_pubkey": (clusternet.wireguard_pubkey if clusternet else "") or None,
        "prefixes": [prefix.cidr for prefix in clusternet.prefixes] if clusternet else [],
        "curator_port": status.running_curator.port if status and status.running_curator else None,
        "version": f"{release.major}.{release.minor}.{release.patch}" if release else None,
    }


def age_text(seconds: float) -> str:
    """A duration as a short age: ``5s``, ``3m``, ``2h``, ``4d``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"
