"""``trionodes watch``: print the cluster's changes (or one node's) as they happen.

One line per change, for people (local time, then ``+``, ``~`` or ``-``) or as JSON
objects for scripts (:class:`ChangeLog`; the schema is in docs/cli.md).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import click

import trionodes
from trionodes import Node, NodeBatch, TrionodesError, WatchStats

from ._connect import Target
from ._format import count_text, format_deleted, format_new, format_updated, full_id, node_record
from ._options import connection_options, timeout_option, watch_exit_status_help
from ._run import SyncDeadline, TimedOut, log_to_stderr, run_command


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class ChangeLog:
    """Writes changes one line each, as ``trionodes watch`` prints them.

    Human lines start with the local time, then the change as
    :func:`~trionodes.cli._format.format_new`, ``format_updated`` and
    ``format_deleted`` give it, with full node ids. JSON lines are objects with an
    ``event`` key (see docs/cli.md for the schema).
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

        The JSON object's ``changed`` lists the keys of ``node_record`` whose values
        differ (empty when only fields outside it changed).
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
            self._emit(event, {"nodes": nodes}, f"{event}: {count_text(nodes)}")

    def _emit(self, event: str, fields: Mapping[str, Any], text: str) -> None:
        now = self._now()
        if self._as_json:
            record = {"event": event, "time": now.isoformat(timespec="milliseconds"), **fields}
            self._write(json.dumps(record, separators=(",", ":")))
        else:
            self._write(f"{now.astimezone():%H:%M:%S} {text}")


def _warn(text: str) -> None:
    click.echo(text, err=True)


def not_in_time(target: Target, timeout: float, stats: WatchStats | None) -> TimedOut:
    """The error of a ``--timeout`` that ran out before the cluster was read.

    Args:
        target: What was followed.
        timeout: The seconds given.
        stats: The watch's counters, whose latest failure says what went wrong; None
            if the watch had not started.
    """
    problem = "" if stats is None or stats.last_error is None else f" ({stats.last_error})"
    tried = "" if stats is None or not stats.reconnects else f" after {stats.reconnects + 1} tries"
    return TimedOut(
        f"could not read the cluster from {target} within {timeout:g} s{tried}{problem}. "
        "Check that the endpoints are reachable and serve the Curator, or give more "
        "time: --timeout SECONDS"
    )


def looks_shortened(node_id: str) -> bool:
    """Whether ``node_id`` is an id as ``top`` shortens it on screen (``metropolis-…0001``)."""
    return "…" in node_id or "..." in node_id


async def run_watch(
    target: Target,
    node_id: str | None,
    log: ChangeLog,
    *,
    sync_within: float | None = None,
    warn: Callable[[str], object] = _warn,
) -> None:
    """Write the cluster's changes (or one node's) to ``log`` until cancelled.

    With ``node_id``, returns once that node has been deleted; if it is not in the
    cluster when the command starts, says so through ``warn`` and waits for it.

    Raises:
        TimedOut: The cluster (with ``node_id``: whether the node is in it) was not
            known within ``sync_within`` seconds.
    """
    deadline = SyncDeadline(sync_within)
    # The cluster watch, once open: its counters say what went wrong, if it times out.
    read_by: trionodes.ClusterWatch | None = None
    with deadline.scope:
        async with target.connect() as curator:
            if node_id is None:
                async with (
                    trionodes.open_node_watch(curator) as watch,
                    watch.open_changes() as changes,
                ):
                    read_by = watch
                    async for batch in changes:
                        deadline.met()
                        log.batch(batch)
                return
            async with trionodes.watch_node(curator, node_id) as watcher:
                # The library waits for a node that is not there yet, in silence: look
                # first, in the whole cluster as it is now, and say so.
                async with trionodes.open_node_watch(curator, relist=None) as cluster:
                    read_by = cluster
                    await cluster.wait_synced()
                    present = node_id in cluster.nodes
                deadline.met()
                if not present and watcher.node is None:
                    warn(f"waiting for node {node_id} to appear; it is not in the cluster now")
                prev: Node | None = None
                async for node in watcher:
                    if prev is None:
                        log.new(node)
                    else:
                        log.updated(prev, node)
                    prev = node
                if watcher.node is not None:
                    log.deleted(watcher.node)
    if deadline.expired:
        assert sync_within is not None
        raise not_in_time(target, sync_within, None if read_by is None else read_by.stats)


def _check_node_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--node``: a whole node id, not one shortened for display."""
    if value is not None and looks_shortened(value):
        raise click.BadParameter(
            f"{value!r} is shortened, as `trionodes top` shows ids on screen: give the "
            "whole id, as `trionodes watch ENDPOINT...` or `trionodes top --once "
            "ENDPOINT...` print it"
        )
    return value


@click.command(
    epilog=watch_exit_status_help("ended by Ctrl-C, or with --node: the node was deleted")
)
@click.option(
    "--node",
    "node_id",
    metavar="ID",
    callback=_check_node_id,
    help="Follow only the node with this id (whole, as this command prints it).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object per line instead of text (schema: docs/cli.md).",
)
@timeout_option(
    "Done means the whole cluster was read (with --node: it is known whether the "
    "node is there). Default: wait for as long as it takes."
)
@connection_options
def watch(target: Target, node_id: str | None, as_json: bool, timeout: float | None) -> None:
    """Print the cluster's changes as they happen, one line each.

    First every node of the cluster (`+`), then `synced`, then each change as it
    happens: `+` a node joined, `~` a node changed (and what changed), `-` a node
    was deleted. With --json each line is an object whose "event" is "new",
    "updated", "deleted", "synced" or "resynced" (after a reconnect).

    With --node, follows that one node: it is printed when it exists (if it does not
    yet, says so on stderr and waits for it), then on each change; the command ends
    when it is deleted.

    Reconnects and their causes are reported on stderr. Stop with Ctrl-C.
    """
    log_to_stderr()
    log = ChangeLog(click.echo, as_json=as_json)
    run = partial(run_watch, target, node_id, log, sync_within=timeout)
    status = run_command(run, error=TrionodesError, hint=target.hint)
    click.get_current_context().exit(status)
