"""The ``trionodes`` command line.

Formatting (nodes in, text out) is kept apart from following (the followers and
writers below) and from running (the click commands), so each can be tested on its
own. Every command runs Trio with Ctrl-C delivered to the main task, and turns how
the run ended into one of the documented exit statuses.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import shlex
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import click
import trio
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

import trionodes
from trionodes import Node, NodeBatch, NodeState, TLSError, TrionodesError, WatchStats

from ._groups import _leaves
from .testing import make_node, open_fake_curator, run_churn, server_ssl_context

# Hex digits of a node id kept by short_id: enough to tell apart the nodes of a demo.
_ID_TAIL = 4
# Kept by `trionodes top`: unlikely to collide in a real cluster of hundreds of nodes.
_TOP_ID_TAIL = 8
_ID_PREFIX = "metropolis-"

# Nodes of the simulated cluster that are Kubernetes controllers and consensus members.
_CONTROL_PLANE_NODES = 3

# Console width of `trionodes top` when stdout is not a terminal.
_PIPE_WIDTH = 200

# Exit statuses, documented in the commands' help and in docs/cli.md.
EXIT_OK = 0
"""Ended by Ctrl-C, by ``--duration``, after ``top --once``, or the node of
``watch --node`` was deleted."""
EXIT_ERROR = 1
"""The watch ended with an error (the Curator refused the call, TLS failed, the
connection could not be kept), or ``serve`` could not listen."""
EXIT_USAGE = 2
"""Bad command line: unknown option, bad value, unreadable certificate file."""

_WATCH_ERROR = """the watch ended with an error (for example the Curator
     refused the call, or TLS failed); the reason is printed on stderr"""


def _exit_status_help(
    ok: str,
    error: str = _WATCH_ERROR,
    usage: str = "bad command line or unusable certificate files",
) -> str:
    """An "Exit status" paragraph for a command's help (``\\b`` keeps its layout)."""
    return f"\b\nExit status:\n  {EXIT_OK}  {ok}\n  {EXIT_ERROR}  {error}\n  {EXIT_USAGE}  {usage}"


# Formatting: pure functions from nodes to text.


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
        return f"initial cluster: {_count(nodes)}"
    return f"batch {number}"


def _count(nodes: int) -> str:
    return f"{nodes} node{'' if nodes == 1 else 's'}"


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


# Following: followers and writers that turn changes into output.


class ChangePrinter:
    """A :class:`~trionodes.Follower` that writes each batch as a block of lines.

    The lines of a batch are collected as its changes arrive and written out together
    when it is done, under a header (see :func:`format_header`).

    Attributes:
        batches: How many batches have been written.
        nodes: How many nodes are in the view.
    """

    def __init__(self, write: Callable[[str], object]) -> None:
        """Make a printer.

        Args:
            write: Called with each batch's text (lines joined by newlines).
        """
        self._write = write
        self._lines: list[str] = []
        self.batches = 0
        self.nodes = 0

    def filter(self, node: Node) -> bool:
        """Admit every node."""
        return True

    def equals(self, a: Node, b: Node) -> bool:
        """Compare whole messages."""
        return a == b

    def new(self, node: Node) -> None:
        """Collect a line for a new node."""
        self.nodes += 1
        self._lines.append(f"  {format_new(node)}")

    def updated(self, prev: Node, node: Node) -> None:
        """Collect a line for a changed node."""
        self._lines.append(f"  {format_updated(prev, node)}")

    def deleted(self, prev: Node) -> None:
        """Collect a line for a node that left."""
        self.nodes -= 1
        self._lines.append(f"  {format_deleted(prev)}")

    def batch_done(self) -> None:
        """Write the batch's lines under their header."""
        self.batches += 1
        self._write("\n".join([format_header(self.batches, self.nodes), *self._lines]))
        self._lines = []


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class ChangeLog:
    """Writes changes one line each, as ``trionodes watch`` prints them.

    Human lines start with the local time, then the change as :func:`format_new`,
    :func:`format_updated` and :func:`format_deleted` give it, with full node ids. JSON
    lines are objects with an ``event`` key (see docs/cli.md for the schema).
    """

    def __init__(
        self,
        write: Callable[[str], object],
        *,
        as_json: bool,
        now: Callable[[], datetime.datetime] = _utc_now,
    ) -> None:
        """Make a change log.

        Args:
            write: Called with each line.
            as_json: Write JSON objects rather than text for people.
            now: The current time, timezone-aware.
        """
        self._write = write
        self._as_json = as_json
        self._now = now

    def new(self, node: Node) -> None:
        """Write that ``node`` appeared (or was there at the start)."""
        self._emit("new", {"node": node_record(node)}, format_new(node, full_id))

    def updated(self, prev: Node, node: Node) -> None:
        """Write that a node changed from ``prev`` to ``node``.

        The JSON object's ``changed`` lists the keys of :func:`node_record` whose
        values differ (empty when only fields outside it changed).
        """
        before, after = node_record(prev), node_record(node)
        changed = [key for key in after if before[key] != after[key]]
        self._emit(
            "updated", {"node": after, "changed": changed}, format_updated(prev, node, full_id)
        )

    def deleted(self, prev: Node) -> None:
        """Write that a node was deleted; ``prev`` is its last known state."""
        self._emit("deleted", {"node": node_record(prev)}, format_deleted(prev, full_id))

    def batch(self, batch: NodeBatch) -> None:
        """Write every change of ``batch``, then ``synced`` or ``resynced`` if it is one.

        ``synced`` follows the initial batch (the whole cluster has been listed);
        ``resynced`` follows the changes found by comparing the cluster with what was
        known before a reconnect.
        """
        for prev, node in batch.upserts():
            if prev is None:
                self.new(node)
            else:
                self.updated(prev, node)
        for prev in batch.deleted:
            self.deleted(prev)
        if batch.initial or batch.resync:
            event = "synced" if batch.initial else "resynced"
            nodes = len(batch.view)
            self._emit(event, {"nodes": nodes}, f"{event}: {_count(nodes)}")

    def _emit(self, event: str, fields: Mapping[str, Any], text: str) -> None:
        now = self._now()
        if self._as_json:
            record = {"event": event, "time": now.isoformat(timespec="milliseconds"), **fields}
            self._write(json.dumps(record, separators=(",", ":")))
        else:
            self._write(f"{now.astimezone():%H:%M:%S} {text}")


def age_text(seconds: float) -> str:
    """A duration as a short age: ``5s``, ``3m``, ``2h``, ``4d``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


@dataclass(slots=True)
class TableRow:
    """One node as ``trionodes top`` shows it.

    Attributes:
        node: The node's latest state (its last state, once gone).
        changed_at: When the last change was seen (``clock`` time), or None for a
            node that has not changed since the table started.
        change: What the last change was (``joined``, ``state NEW -> UP``, ``left``).
        gone: Whether the node has left the cluster.
    """

    node: Node
    changed_at: float | None = None
    change: str = ""
    gone: bool = False


class NodeTable:
    """A :class:`~trionodes.Follower` keeping the rows of ``trionodes top``.

    Nodes that leave stay in the table, marked gone, for ``linger`` seconds, so that a
    person sees them go.

    Attributes:
        synced: Whether the initial cluster has arrived.
        batches: How many batches have been applied.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, linger: float = 10.0) -> None:
        """Make an empty table.

        Args:
            clock: Seconds from a monotonic clock.
            linger: How long a node that left stays in the table.
        """
        self._clock = clock
        self._linger = linger
        self._rows: dict[str, TableRow] = {}
        self.synced = False
        self.batches = 0

    def filter(self, node: Node) -> bool:
        """Admit every node."""
        return True

    def equals(self, a: Node, b: Node) -> bool:
        """Compare whole messages."""
        return a == b

    def new(self, node: Node) -> None:
        """Add a row; a node of the initial cluster has no change yet."""
        if self.synced:
            self._rows[node.id] = TableRow(node, self._clock(), "joined")
        else:
            self._rows[node.id] = TableRow(node)

    def updated(self, prev: Node, node: Node) -> None:
        """Replace the node's row, noting what changed."""
        self._rows[node.id] = TableRow(node, self._clock(), ", ".join(diff_nodes(prev, node)))

    def deleted(self, prev: Node) -> None:
        """Mark the node's row as gone."""
        self._rows[prev.id] = TableRow(prev, self._clock(), "left", gone=True)

    def batch_done(self) -> None:
        """Note that the table is complete up to this batch."""
        self.synced = True
        self.batches += 1

    def rows(self) -> list[TableRow]:
        """The rows to show, in node id order; drops gone rows older than ``linger``."""
        now = self._clock()
        for node_id, row in list(self._rows.items()):
            if row.gone and row.changed_at is not None and now - row.changed_at > self._linger:
                del self._rows[node_id]
        return [self._rows[node_id] for node_id in sorted(self._rows)]

    def age(self, row: TableRow) -> str:
        """How long ago the row's last change was seen, or ``-``."""
        if row.changed_at is None:
            return "-"
        return f"{age_text(self._clock() - row.changed_at)} ago"


class LastLogRecord(logging.Handler):
    """A logging handler that keeps only the latest record (shown by ``top``)."""

    def __init__(self) -> None:
        """Keep nothing yet."""
        super().__init__(logging.INFO)
        self.last: logging.LogRecord | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Keep ``record``, forgetting the one before."""
        self.last = record


_STATE_STYLES = {
    NodeState.UP: "green",
    NodeState.NEW: "yellow",
    NodeState.STANDBY: "cyan",
    NodeState.DECOMMISSIONED: "red",
}


def connection_text(stats: WatchStats) -> Text:
    """The state of a watch's stream in a word or two, styled, and its reconnects.

    ``connecting`` before the first stream is up, ``syncing`` while a backlog comes
    in, ``live`` once it is in, ``reconnecting`` after a fault; then the number of
    reconnects, if any.
    """
    if stats.connected:
        text = Text("live", "green") if stats.synced else Text("syncing", "yellow")
    elif stats.last_error is None:
        text = Text("connecting", "yellow")
    else:
        text = Text("reconnecting", "red")
    if stats.reconnects:
        text.append(f" · {stats.reconnects} reconnect{'' if stats.reconnects == 1 else 's'}")
    return text


def render_table(
    table: NodeTable,
    title: str,
    stats: WatchStats,
    last_log: logging.LogRecord | None = None,
) -> Group:
    """The screen of ``trionodes top``: a rich renderable.

    Args:
        table: The rows.
        title: The start of the first line (what is being watched).
        stats: The watch's state, shown at the end of the first line.
        last_log: The latest log line from the library, if any (for example a
            reconnect and its cause), shown below the table.
    """
    rows = table.rows()
    present = [row for row in rows if not row.gone]
    up = sum(row.node.state is NodeState.UP for row in present)
    status = f"{_count(len(present))}, {up} up" if table.synced else "waiting for the cluster…"
    heading = Text(f"{title} · {status} · ", style="bold")
    heading.append(connection_text(stats))
    grid = Table(box=box.SIMPLE_HEAD)
    for header in ("NODE", "STATE", "ADDRESS", "ROLES", "CHANGED", "LAST CHANGE"):
        grid.add_column(header, no_wrap=True, overflow="ellipsis")
    for row in rows:
        node = row.node
        style = "dim strike" if row.gone else ""
        state = Text("GONE" if row.gone else state_text(node))
        if not row.gone:
            state.stylize(_STATE_STYLES.get(node.state, ""))
        grid.add_row(
            short_id(node.id, _TOP_ID_TAIL),
            state,
            address_text(node),
            roles_text(node),
            table.age(row),
            row.change or "-",
            style=style,
        )
    # Heading and log line apart from the table, so they are not wrapped to its width.
    return Group(heading, grid) if last_log is None else Group(heading, grid, _log_text(last_log))


def _log_text(record: logging.LogRecord) -> Text:
    when = datetime.datetime.fromtimestamp(record.created)
    return Text(f"{when:%H:%M:%S} {record.levelname.lower()}: {record.getMessage()}", "yellow")


# Running.


def demo_nodes(count: int) -> Iterator[Node]:
    """The simulated cluster's nodes before any change.

    The first three are Kubernetes controllers and consensus members (the first of
    them not a worker), the others plain workers; of a cluster larger than that, the
    last node is still NEW.

    Args:
        count: How many nodes.
    """
    for index in range(1, count + 1):
        control_plane = index <= _CONTROL_PLANE_NODES
        joining = index == count and count > _CONTROL_PLANE_NODES
        yield make_node(
            index,
            state=NodeState.NEW if joining else NodeState.UP,
            worker=index != 1,
            controller=control_plane,
            consensus=control_plane,
        )


async def run_demo(
    nodes: int, churn: float, seed: int | None, write: Callable[[str], object]
) -> None:
    """Serve a changing fake cluster and print its changes, until cancelled.

    Args:
        nodes: The cluster's size, at the start and on average.
        churn: Changes per second; 0 for none.
        seed: Seeds the changes; None for different changes each run.
        write: Called with each block of output.
    """
    async with open_fake_curator() as fake:
        fake.put(*demo_nodes(nodes))
        write(f"fake Curator on {fake.host}:{fake.port}, {churn:g} changes/s; Ctrl-C to stop")
        async with (
            trionodes.open_curator(fake.host, fake.port) as curator,
            trio.open_nursery() as nursery,
        ):
            # Changes start once the initial cluster is shown, so it is the one made here.
            await nursery.start(trionodes.watch_nodes, curator, ChangePrinter(write))
            if churn > 0:
                churning = partial(
                    run_churn, fake, changes_per_second=churn, target_nodes=nodes, seed=seed
                )
                nursery.start_soon(churning)


def endpoint_text(host: str, port: int) -> str:
    """``HOST:PORT``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to reach a Curator, from the command line.

    Attributes:
        host: Host name or address.
        port: TCP port.
        ssl: The client TLS context; None for plain text.
        server_hostname: The name the Curator's certificate must hold, if not ``host``.
    """

    host: str
    port: int
    ssl: ssl.SSLContext | None = None
    server_hostname: str | None = None

    def __str__(self) -> str:
        return endpoint_text(self.host, self.port)

    def connect(self) -> contextlib.AbstractAsyncContextManager[trionodes.Curator]:
        """Open the connection (:func:`trionodes.open_curator`)."""
        return trionodes.open_curator(
            self.host, self.port, ssl=self.ssl, server_hostname=self.server_hostname
        )


async def run_watch(target: Target, node_id: str | None, log: ChangeLog) -> None:
    """Write the cluster's changes (or one node's) to ``log`` until cancelled.

    With ``node_id``, returns once that node has been deleted.
    """
    async with target.connect() as curator:
        if node_id is None:
            async with trionodes.open_node_changes(curator) as changes:
                async for batch in changes:
                    log.batch(batch)
            return
        async with trionodes.watch_node(curator, node_id) as watcher:
            prev: Node | None = None
            async for node in watcher:
                if prev is None:
                    log.new(node)
                else:
                    log.updated(prev, node)
                prev = node
            if watcher.node is not None:
                log.deleted(watcher.node)


async def run_top(
    target: Target,
    *,
    interval: float,
    once: bool,
    show: Callable[[RenderableType], object],
    live: Callable[[], contextlib.AbstractContextManager[Live]],
    last_log: LastLogRecord,
) -> None:
    """Show the cluster's nodes: once after the initial cluster, or refreshed forever.

    Args:
        target: The Curator.
        interval: Seconds between two refreshes.
        once: Show the table once the initial cluster is in, then return.
        show: Prints a renderable (in ``once`` mode).
        live: Opens a live display, whose ``update(renderable, refresh=True)`` redraws.
        last_log: The latest library warning, shown below the table.
    """
    table = NodeTable()
    title = f"trionodes top · {target}"
    async with (
        target.connect() as curator,
        trionodes.open_node_watch(curator) as watch,
        trio.open_nursery() as nursery,
    ):
        if once:
            await nursery.start(watch.follow, table)
            show(render_table(table, title, watch.stats))
            nursery.cancel_scope.cancel()
            return
        nursery.start_soon(watch.follow, table)
        with live() as display:
            while True:
                display.update(render_table(table, title, watch.stats, last_log.last), refresh=True)
                await trio.sleep(interval)


@dataclass(frozen=True, slots=True)
class ServeFiles:
    """The certificates ``trionodes serve --tls DIR`` writes (PEM files)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certificates(directory: Path, host: str) -> ServeFiles:
    """Make a throwaway CA, a server and a client certificate, as PEM files.

    The server certificate names ``localhost``, ``127.0.0.1``, ``::1`` and ``host``.
    Private keys are written with mode 0600. Files of an earlier run are replaced.

    Args:
        directory: Where to write them; created if missing.
        host: The address the server listens on.

    Raises:
        ImportError: trustme, which makes them, is not installed (an optional
            dependency: only this needs it, and the cryptography package under it).
    """
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    directory = directory.resolve()
    files = ServeFiles(
        *(
            directory / name
            for name in ("ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem")
        )
    )
    ca = trustme.CA(organization_name="trionodes serve")
    names = dict.fromkeys(["localhost", "127.0.0.1", "::1", host])
    server = ca.issue_cert(*names)
    client = ca.issue_cert("trionodes-client.invalid")
    _write_file(files.ca, ca.cert_pem.bytes(), private=False)
    for issued, cert, key in (
        (server, files.server_cert, files.server_key),
        (client, files.client_cert, files.client_key),
    ):
        _write_file(cert, b"".join(blob.bytes() for blob in issued.cert_chain_pems), private=False)
        _write_file(key, issued.private_key_pem.bytes(), private=True)
    return files


def _write_file(path: Path, data: bytes, *, private: bool) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def watch_command(host: str, port: int, files: ServeFiles | None) -> str:
    """The ``trionodes watch`` command line that follows a ``trionodes serve``."""
    words = ["trionodes", "watch", endpoint_text(host, port)]
    if files is not None:
        words += ["--ca", str(files.ca), "--cert", str(files.client_cert)]
        words += ["--key", str(files.client_key)]
    return shlex.join(words)


class CommandError(Exception):
    """A command cannot go on, for a reason printed as the message (exit status 1)."""


async def run_serve(
    host: str,
    port: int,
    nodes: int,
    churn: float,
    seed: int | None,
    tls_dir: Path | None,
    write: Callable[[str], object],
) -> None:
    """Serve a simulated cluster until cancelled, after writing where it listens.

    Raises:
        CommandError: The certificates could not be made or written, or the server
            could not listen on ``host:port``.
    """
    files = None
    if tls_dir is not None:
        try:
            files = make_certificates(tls_dir, host)
        except ImportError:
            raise CommandError(
                "--tls needs trustme to make certificates: pip install 'trionodes[serve-tls]'"
            ) from None
        except OSError as exc:
            raise CommandError(f"cannot write the certificates into {tls_dir}: {exc}") from exc
    context = (
        None
        if files is None
        else server_ssl_context(files.server_cert, files.server_key, client_ca=files.ca)
    )
    async with contextlib.AsyncExitStack() as stack:
        try:
            fake = await stack.enter_async_context(
                open_fake_curator(host=host, port=port, ssl=context)
            )
        except OSError as exc:
            where = endpoint_text(host, port)
            raise CommandError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
        fake.put(*demo_nodes(nodes))
        tls = " with mutual TLS" if files else ""
        write(
            f"fake Curator listening on {endpoint_text(fake.host, fake.port)}{tls}: "
            f"{_count(nodes)}, {churn:g} changes/s; Ctrl-C to stop"
        )
        if files is not None:
            write(f"certificates in {files.ca.parent}: ca.pem (the CA), client.pem, client-key.pem")
        write(f"follow it with: {watch_command(fake.host, fake.port, files)}")
        if churn > 0:
            await run_churn(fake, changes_per_second=churn, target_nodes=nodes, seed=seed)
        else:
            await trio.sleep_forever()


def _silence_stdout() -> None:
    # The reader went away (`trionodes watch | head`): point stdout at /dev/null so
    # that flushing it at exit does not fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


_TLS_HINT = (
    "TLS needs --ca (the cluster CA), --cert and --key; if the Curator's certificate "
    "names another host, add --server-hostname NAME or --no-check-hostname"
)


def run_command(main: Callable[[], Awaitable[object]], *, error: type[BaseException]) -> int:
    """Run ``main`` under Trio; return the exit status (``EXIT_OK`` or ``EXIT_ERROR``).

    Ctrl-C and a reader that closed stdout end it cleanly; an ``error`` is printed on
    stderr. Anything else is a bug and propagates.
    """
    status = EXIT_OK
    try:
        # Ctrl-C raises KeyboardInterrupt in the main task only, at a checkpoint. Raised
        # anywhere else, it could kill the trio-asyncio loop under the gRPC connection,
        # and the tasks waiting on that loop would then wait forever.
        trio.run(main, restrict_keyboard_interrupt_to_checkpoints=True)
    except* KeyboardInterrupt:
        pass
    except* BrokenPipeError:
        _silence_stdout()
    except* error as group:
        for exc in _leaves(group):
            click.echo(f"trionodes: error: {exc}", err=True)
            if isinstance(exc, TLSError):
                # The message speaks of the Python API; say it in options too.
                click.echo(f"trionodes: hint: {_TLS_HINT}", err=True)
        status = EXIT_ERROR
    return status


def _log_to_stderr() -> None:
    """Print the library's log (failures, reconnects, recoveries) on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    # The error that ends a watch is printed once, by run_command, as `trionodes: error:`.
    handler.addFilter(lambda record: record.levelno < logging.ERROR)
    _library_logger().addHandler(handler)


def _library_logger() -> logging.Logger:
    logger = logging.getLogger("trionodes")
    # INFO: also the line saying that a watch is back after failures.
    logger.setLevel(logging.INFO)
    return logger


# The command line.


def parse_endpoint(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (an IPv6 address in brackets: ``[::1]:7835``) and check it.

    Raises:
        click.BadParameter: ``value`` is not of that form.
    """
    host, colon, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise click.BadParameter(f"{value!r}: write an IPv6 address in brackets, as [::1]:7835")
    if not colon or not host:
        raise click.BadParameter(f"{value!r} is not HOST:PORT")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise click.BadParameter(f"{value!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


_F = TypeVar("_F", bound=Callable[..., Any])

_PEM_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _connection_options(command: _F) -> _F:
    """Add the endpoint argument and the TLS options to a command."""
    options = [
        click.argument("endpoint", callback=parse_endpoint, metavar="HOST:PORT"),
        click.option(
            "--ca",
            type=_PEM_FILE,
            metavar="FILE",
            help="The cluster CA certificate (PEM) to verify the Curator with. Give it "
            "with --cert and --key (mutual TLS); leave all three out for plain text.",
        ),
        click.option(
            "--cert",
            type=_PEM_FILE,
            metavar="FILE",
            help="The client certificate (PEM) to present, issued by the cluster CA.",
        ),
        click.option(
            "--key", type=_PEM_FILE, metavar="FILE", help="The client certificate's key (PEM)."
        ),
        click.option(
            "--server-hostname",
            metavar="NAME",
            help="The name the Curator's certificate must hold, when it is not HOST "
            "(for example when connecting by address). Needs TLS.",
        ),
        click.option(
            "--no-check-hostname",
            is_flag=True,
            help="Accept a Curator certificate that names another host (it must still "
            "be issued by the CA). For certificates that name no host.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _simulation_options(*, churn: float) -> Callable[[_F], _F]:
    """Add the options of a simulated cluster to a command; ``churn`` is the default."""
    options = [
        click.option(
            "--nodes",
            type=click.IntRange(min=0),
            default=6,
            show_default=True,
            metavar="N",
            help="Nodes in the simulated cluster, at the start and on average.",
        ),
        click.option(
            "--churn",
            type=click.FloatRange(min=0),
            default=churn,
            show_default=True,
            metavar="PER_SECOND",
            help="Changes to the cluster per second (joins, state and address changes, "
            "leaves); 0 for none.",
        ),
        click.option(
            "--seed",
            type=int,
            default=None,
            metavar="S",
            help="Seed for the changes, to repeat a run. Default: different changes each run.",
        ),
    ]

    def add(command: _F) -> _F:
        for option in reversed(options):
            command = option(command)
        return command

    return add


def _target(
    endpoint: tuple[str, int],
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    server_hostname: str | None,
    no_check_hostname: bool,
) -> Target:
    host, port = endpoint
    given = [name for name, value in (("--ca", ca), ("--cert", cert), ("--key", key)) if value]
    if given and len(given) < 3:
        raise click.UsageError(
            f"TLS needs --ca, --cert and --key together (got {', '.join(given)})"
        )
    if ca is None or cert is None or key is None:
        if server_hostname is not None or no_check_hostname:
            raise click.UsageError("--server-hostname and --no-check-hostname need TLS")
        return Target(host, port)
    try:
        context = trionodes.client_ssl_context(ca, cert, key, check_hostname=not no_check_hostname)
    except (ssl.SSLError, ValueError) as exc:
        raise click.UsageError(f"cannot use the certificate files: {exc}") from None
    return Target(host, port, context, server_hostname)


@click.group()
def main() -> None:
    """Follow the nodes of a Monogon Metropolis cluster.

    HOST:PORT is a Curator's address, e.g. 127.0.0.1:7835 or [::1]:7835. Try the
    commands against a simulated cluster: run `trionodes serve` in one terminal,
    then the `trionodes watch` command it prints in another.
    """


@main.command(epilog=_exit_status_help("ended by Ctrl-C, or with --node: the node was deleted"))
@click.option("--node", "node_id", metavar="ID", help="Follow only the node with this id.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object per line instead of text (schema: docs/cli.md).",
)
@_connection_options
def watch(
    endpoint: tuple[str, int],
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    server_hostname: str | None,
    no_check_hostname: bool,
    node_id: str | None,
    as_json: bool,
) -> None:
    """Print the cluster's changes as they happen, one line each.

    First every node of the cluster (`+`), then `synced`, then each change as it
    happens: `+` a node joined, `~` a node changed (and what changed), `-` a node
    was deleted. With --json each line is an object whose "event" is "new",
    "updated", "deleted", "synced" or "resynced" (after a reconnect).

    With --node, follows that one node: it is printed when it exists (waiting for it
    if it does not yet), then on each change; the command ends when it is deleted.

    Reconnects and their causes are reported on stderr. Stop with Ctrl-C.
    """
    target = _target(endpoint, ca, cert, key, server_hostname, no_check_hostname)
    _log_to_stderr()
    log = ChangeLog(click.echo, as_json=as_json)
    status = run_command(partial(run_watch, target, node_id, log), error=TrionodesError)
    click.get_current_context().exit(status)


@main.command(epilog=_exit_status_help("ended by Ctrl-C, or --once has printed the table"))
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Time between two refreshes of the table.",
)
@click.option(
    "--once",
    is_flag=True,
    help="Print the table once the whole cluster is in, then exit (the default when "
    "stdout is not a terminal, or one that cannot redraw, TERM=dumb).",
)
@_connection_options
def top(
    endpoint: tuple[str, int],
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    server_hostname: str | None,
    no_check_hostname: bool,
    interval: float,
    once: bool,
) -> None:
    """Show the cluster's nodes in a table that keeps itself up to date.

    One row per node: its id, state, address and roles, how long ago it last
    changed and what changed. Nodes that leave stay for a few seconds, struck
    through. The first line tells whether the stream is live, syncing or
    reconnecting, and how often it reconnected; the latest failure or recovery
    shows below the table.
    Works in any terminal, also over SSH. Stop with Ctrl-C.
    """
    target = _target(endpoint, ca, cert, key, server_hostname, no_check_hostname)
    console = Console()
    last_log = LastLogRecord()
    if not console.is_terminal:
        once = True
        # Wide enough for any row: a pipe gets whole cells, never cut ones.
        console = Console(width=_PIPE_WIDTH)
    elif console.is_dumb_terminal:
        once = True  # it cannot move the cursor to redraw
    if once:
        _log_to_stderr()
    else:
        _library_logger().addHandler(last_log)

    def live() -> Live:
        return Live(console=console, screen=True, auto_refresh=False)

    run = partial(
        run_top,
        target,
        interval=interval,
        once=once,
        show=console.print,
        live=live,
        last_log=last_log,
    )
    click.get_current_context().exit(run_command(run, error=TrionodesError))


@main.command(
    epilog=_exit_status_help(
        "ended by Ctrl-C",
        "could not listen, or write the certificates (the reason is printed on stderr)",
        "bad command line",
    )
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    metavar="ADDRESS",
    help="Address to listen on. Keep it on loopback: the simulated Curator is for trying "
    "things out.",
)
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=0,
    show_default=True,
    metavar="PORT",
    help="Port to listen on; 0 picks a free one (printed at the start).",
)
@_simulation_options(churn=1.0)
@click.option(
    "--tls",
    "tls_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Serve mutual TLS, like a real Curator, with a throwaway CA made for this run. "
    "Writes ca.pem, server.pem, server-key.pem, client.pem and client-key.pem into DIR "
    "(created if missing; files of an earlier run are replaced) and prints the "
    "`trionodes watch` command that uses them. Needs trustme: "
    "pip install 'trionodes[serve-tls]'.",
)
def serve(
    host: str, port: int, nodes: int, churn: float, seed: int | None, tls_dir: Path | None
) -> None:
    """Run a simulated Curator until Ctrl-C.

    Serves the Curator's Watch call from an in-memory cluster that keeps changing,
    the way a real Curator serves it. Prints where it listens and the `trionodes
    watch` command that follows it; point your own program at it just the same.
    """
    run = partial(run_serve, host, port, nodes, churn, seed, tls_dir, click.echo)
    click.get_current_context().exit(run_command(run, error=CommandError))


@main.command(epilog="\b\nExit status:\n  0  ended by Ctrl-C or --duration")
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Stop after this many seconds. Default: run until Ctrl-C.",
)
@_simulation_options(churn=2.0)
def demo(duration: float | None, nodes: int, churn: float, seed: int | None) -> None:
    """Follow a simulated cluster that keeps changing.

    Starts a fake Curator on 127.0.0.1 serving a simulated cluster that keeps
    changing, connects to it as to a real one, and prints the initial cluster and
    then each batch of changes. Stops on Ctrl-C or after --duration.
    """

    async def run() -> None:
        with trio.move_on_after(math.inf if duration is None else duration):
            await run_demo(nodes, churn, seed, click.echo)

    interrupted = False
    try:
        trio.run(run, restrict_keyboard_interrupt_to_checkpoints=True)
    except* KeyboardInterrupt:
        interrupted = True
    click.echo("interrupted, bye" if interrupted else "time's up, bye")


if __name__ == "__main__":
    main()
