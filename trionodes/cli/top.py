"""``trionodes top``: a table of the cluster's nodes that keeps itself up to date.

:class:`NodeTable` follows the cluster and keeps the rows (with what changed and
when); :func:`render_table` draws them with rich; :func:`run_top` redraws them in a
live display, or prints them once.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import click
import trio
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

import trionodes
from trionodes import Node, NodeState, TrionodesError, WatchStats

from ._connect import Target, leader_text, terminal_words
from ._format import (
    address_text,
    age_text,
    count_text,
    diff_nodes,
    full_id,
    roles_text,
    short_id,
    state_text,
)
from ._options import connection_options, timeout_option, watch_exit_status_help
from ._run import SyncDeadline, library_logger, log_to_stderr, run_command
from .watch import not_in_time

# Hex digits of a node id kept: unlikely to collide in a real cluster of hundreds of nodes.
_TOP_ID_TAIL = 8

# Console width when stdout is not a terminal: whole ids and the longest changes fit.
_PIPE_WIDTH = 240
# Seconds `--once` gives the whole cluster to come in, unless --timeout says otherwise.
ONCE_TIMEOUT = 30.0


def screen_id(node_id: str) -> str:
    """A node id shortened to fit a live screen (``metropolis-…01814359``)."""
    return short_id(node_id, _TOP_ID_TAIL)


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


class NodeTable(trionodes.Follower):
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

    ``connecting…`` at first, ``not connected yet`` with the number of attempts
    while no stream has ever answered, ``syncing`` while a backlog comes in,
    ``live`` once it is in, ``reconnecting`` after a fault; then the number of
    reconnects, if any, once it has been connected.
    """
    if stats.connected:
        text = Text("live", "green") if stats.synced else Text("syncing", "yellow")
    elif stats.events_received == 0:
        # Never connected: a reconnect would be a wrong word, and so would a count of them.
        if stats.last_error is None and not stats.reconnects:
            return Text("connecting…", "yellow")
        attempts = stats.reconnects + 1
        return Text(f"not connected yet · {attempts} attempt{'' if attempts == 1 else 's'}", "red")
    elif stats.last_error is None:
        text = Text("connecting…", "yellow")
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
    *,
    leader: str | None = None,
    id_text: Callable[[str], str] = screen_id,
) -> Group:
    """The screen of ``trionodes top``: a rich renderable.

    Args:
        table: The rows.
        title: The start of the first line (what is being watched).
        stats: The watch's state, shown at the end of the first line.
        last_log: The latest log line from the library, if any (for example a
            reconnect and its cause), shown below the table.
        leader: Who leads the cluster (``leader ID at HOST:PORT``), shown on the
            first line before the watch's state; None for a single server.
        id_text: Writes a node id in its cell: shortened to fit a screen by
            default, whole when printed once (to be copied).
    """
    rows = table.rows()
    present = [row for row in rows if not row.gone]
    up = sum(row.node.state is NodeState.UP for row in present)
    status = f"{count_text(len(present))}, {up} up" if table.synced else "waiting for the cluster…"
    heading = Text(f"{title} · {status} · ", style="bold")
    if leader is not None:
        heading.append(f"{leader} · ", style="bold cyan")
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
            id_text(node.id),
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
    message = terminal_words(record.getMessage())
    return Text(f"{when:%H:%M:%S} {record.levelname.lower()}: {message}", "yellow")


async def run_top(
    target: Target,
    *,
    interval: float,
    once: bool,
    show: Callable[[RenderableType], object],
    live: Callable[[], contextlib.AbstractContextManager[Live]],
    last_log: LastLogRecord,
    sync_within: float | None = None,
) -> None:
    """Show the cluster's nodes: once after the initial cluster, or refreshed forever.

    Args:
        target: The Curator, or the cluster (whose leader the first line names).
        interval: Seconds between two refreshes.
        once: Show the table once the initial cluster is in, then return. Node ids
            are whole, to be copied; on a live screen they are shortened to fit.
        show: Prints a renderable (in ``once`` mode).
        live: Opens a live display, whose ``update(renderable, refresh=True)`` redraws.
        last_log: The latest library warning, shown below the table.
        sync_within: Give up unless the whole cluster is in within this many
            seconds; None to wait for as long as it takes.

    Raises:
        TimedOut: ``sync_within`` ran out first.
    """
    table = NodeTable()
    # A cluster's first line names the leader and its address instead of the endpoints.
    title = f"trionodes top · {'cluster' if target.cluster else target}"
    id_text = full_id if once else screen_id
    deadline = SyncDeadline(sync_within)
    read_by: trionodes.ClusterWatch | None = None
    with deadline.scope:
        async with (
            target.connect() as curator,
            trionodes.open_node_watch(curator) as watch,
            trio.open_nursery() as nursery,
        ):
            read_by = watch

            def screen(last: logging.LogRecord | None = None) -> Group:
                # The leader is read at each redraw: it changes when the leadership moves.
                leader = leader_text(curator, whole_id=once) if target.cluster else None
                return render_table(table, title, watch.stats, last, leader=leader, id_text=id_text)

            if once:
                await nursery.start(watch.follow, table)
                deadline.met()
                show(screen())
                nursery.cancel_scope.cancel()
                return
            nursery.start_soon(watch.follow, table)
            nursery.start_soon(_lift_when_synced, watch, deadline)
            with live() as display:
                while True:
                    display.update(screen(last_log.last), refresh=True)
                    await trio.sleep(interval)
    if deadline.expired:
        assert sync_within is not None
        raise not_in_time(target, sync_within, None if read_by is None else read_by.stats)


async def _lift_when_synced(watch: trionodes.ClusterWatch, deadline: SyncDeadline) -> None:
    try:
        await watch.wait_synced()
    except trionodes.WatchClosed:
        return  # the watch's own error ends the command
    deadline.met()


@click.command(epilog=watch_exit_status_help("ended by Ctrl-C, or --once has printed the table"))
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
@timeout_option(
    "Done means the whole cluster is in the table. Default: 30 with --once (also "
    "when stdout is not a terminal), else wait for as long as it takes."
)
@connection_options
def top(target: Target, interval: float, once: bool, timeout: float | None) -> None:
    """Show the cluster's nodes in a table that keeps itself up to date.

    One row per node: its id, state, address and roles, how long ago it last
    changed and what changed. Nodes that leave stay for a few seconds, struck
    through. The first line tells which node leads (when following a cluster),
    whether the stream is live, syncing or reconnecting, and how often it
    reconnected; the latest failure or recovery shows below the table.
    Works in any terminal, also over SSH. Stop with Ctrl-C.
    """
    console = Console()
    last_log = LastLogRecord()
    if not console.is_terminal:
        once = True
        # Wide enough for any row: a pipe gets whole cells, never cut ones.
        console = Console(width=_PIPE_WIDTH)
    elif console.is_dumb_terminal:
        once = True  # it cannot move the cursor to redraw
    if once:
        log_to_stderr()
        # A script waits for the table: never forever.
        timeout = ONCE_TIMEOUT if timeout is None else timeout
    else:
        library_logger().addHandler(last_log)

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
        sync_within=timeout,
    )
    click.get_current_context().exit(run_command(run, error=TrionodesError, hint=target.hint))
