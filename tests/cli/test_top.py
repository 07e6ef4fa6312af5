"""`trionodes top`: its table of nodes, how rich draws it, and the command run in a
pipe and in a terminal."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import io
import logging
import os
import pty
import struct
import sys
import termios
from collections.abc import AsyncIterator

import pytest
import trio
import trio.lowlevel
from rich.console import Console

import trionodes
from trionodes import NodeState, WatchStats
from trionodes.cli import EXIT_OK, EXIT_TIMEOUT
from trionodes.cli._cluster import demo_nodes
from trionodes.cli.top import NodeTable, connection_text, render_table
from trionodes.testing import FakeCurator, make_node

from .process import (
    STARTUP_TIMEOUT,
    Command,
    closed_port,
    endpoint,
    run,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_node_table_rows() -> None:
    clock = FakeClock()
    table = NodeTable(clock, linger=10)
    follower: trionodes.Follower = table  # it is one
    follower.new(make_node(2))
    follower.new(make_node(1))
    assert (table.synced, table.batches) == (False, 0)
    follower.batch_done()
    assert (table.synced, table.batches) == (True, 1)
    assert [(row.node.id, table.age(row), row.change) for row in table.rows()] == [
        (make_node(1).id, "-", ""),
        (make_node(2).id, "-", ""),
    ]
    clock.now += 5
    table.new(make_node(3, state=NodeState.NEW))
    table.updated(make_node(1), make_node(1, address="10.7.7.7"))
    table.deleted(make_node(2))
    table.batch_done()
    clock.now += 3
    assert [(table.age(row), row.change, row.gone) for row in table.rows()] == [
        ("3s ago", "address 10.0.0.1 -> 10.7.7.7", False),
        ("3s ago", "left", True),
        ("3s ago", "joined", False),
    ]
    clock.now += 8  # node 2 left 11 s ago: longer than it lingers
    assert [row.node.id for row in table.rows()] == [make_node(1).id, make_node(3).id]


LIVE = WatchStats(connected=True, synced=True, events_received=1)


def test_connection_text() -> None:
    lost = trionodes.ConnectionLost("gone")
    assert [
        connection_text(stats).plain
        for stats in (
            WatchStats(),
            WatchStats(last_error=lost),
            WatchStats(last_error=lost, reconnects=2),
            WatchStats(connected=True, events_received=1),
            WatchStats(connected=True, synced=True, events_received=3),
            WatchStats(events_received=3, last_error=lost),
            WatchStats(events_received=3, last_error=lost, reconnects=1),
            WatchStats(
                connected=True, synced=True, events_received=9, last_error=lost, reconnects=2
            ),
        )
    ] == [
        "connecting…",
        # Never connected: no "reconnects" of a connection that never was.
        "not connected yet · 1 attempt",
        "not connected yet · 3 attempts",
        "syncing",
        "live",
        "reconnecting",
        "reconnecting · 1 reconnect",
        "live · 2 reconnects",
    ]


def rendered(
    table: NodeTable, stats: WatchStats = LIVE, last_log: logging.LogRecord | None = None
) -> list[str]:
    console = Console(file=io.StringIO(), width=150, color_system=None)
    console.print(render_table(table, "trionodes top · h:1", stats, last_log))
    assert isinstance(console.file, io.StringIO)
    return [line.rstrip() for line in console.file.getvalue().splitlines()]


def test_render_table() -> None:
    clock = FakeClock()
    table = NodeTable(clock)
    assert rendered(table, WatchStats())[0] == (
        "trionodes top · h:1 · waiting for the cluster… · connecting…"
    )
    table.new(make_node(1, controller=True))
    table.new(make_node(2, state=NodeState.NEW))
    table.batch_done()
    table.deleted(make_node(2, state=NodeState.NEW))
    clock.now += 9
    record = trionodes_log_record("watch failed: connection lost; reconnecting in 0.40 s")
    lines = rendered(table, last_log=record)
    assert lines[0] == "trionodes top · h:1 · 1 node, 1 up · live"
    body = [line.split() for line in lines[1:] if "metropolis" in line]
    assert body == [
        ["metropolis-…00000001", "UP", "10.0.0.1", "worker,controller", "-", "-"],
        ["metropolis-…00000002", "GONE", "10.0.0.2", "worker", "9s", "ago", "left"],
    ]
    when = datetime.datetime.fromtimestamp(record.created)
    assert lines[-1] == (
        f"{when:%H:%M:%S} warning: watch failed: connection lost; reconnecting in 0.40 s"
    )


def trionodes_log_record(message: str) -> logging.LogRecord:
    return logging.LogRecord("trionodes", logging.WARNING, __file__, 1, message, None, None)


async def test_top_once_prints_the_cluster(fake: FakeCurator) -> None:
    fake.put(*demo_nodes(4))
    async with run("top", "--once", endpoint(fake)) as top:
        title = await top.line()
        lines = [await top.line() for _ in range(7)]
        status, stderr = await top.wait()
    assert status == EXIT_OK, stderr
    assert title.strip() == f"trionodes top · {endpoint(fake)} · 4 nodes, 3 up · live"
    rows = [line.split() for line in lines if "metropolis" in line]
    # Whole ids, to be copied (a live screen shortens them to fit).
    ids = [make_node(index).id for index in range(1, 5)]
    assert rows == [
        [ids[0], "UP", "10.0.0.1", "controller,consensus", "-", "-"],
        [ids[1], "UP", "10.0.0.2", "worker,controller,consensus", "-", "-"],
        [ids[2], "UP", "10.0.0.3", "worker,controller,consensus", "-", "-"],
        [ids[3], "NEW", "10.0.0.4", "worker", "-", "-"],
    ]


async def test_top_once_gives_up_at_its_timeout() -> None:
    port = closed_port()
    async with run("top", "--once", "--timeout", "1", f"127.0.0.1:{port}") as top:
        status, stderr = await top.wait()
        assert await top.rest() == ""
    assert status == EXIT_TIMEOUT
    assert stderr.splitlines()[-1].startswith(
        f"trionodes: error: could not read the cluster from 127.0.0.1:{port} within 1 s"
    )


# `top --once` without --timeout: the default, made short so as not to wait 30 s.
ONCE_DEFAULT = """
import sys
import trionodes.cli.top
from trionodes.cli import main

assert trionodes.cli.top.ONCE_TIMEOUT == 30
trionodes.cli.top.ONCE_TIMEOUT = 1.5
main(sys.argv[1:])
"""


@pytest.mark.parametrize("once", [["--once"], []])  # [] : stdout is a pipe, so once
async def test_once_implies_a_timeout(once: list[str]) -> None:
    port = closed_port()
    async with run(sys.executable, "-c", ONCE_DEFAULT, "top", *once, f"127.0.0.1:{port}") as top:
        status, stderr = await top.wait()
    assert status == EXIT_TIMEOUT
    assert f"127.0.0.1:{port} within 1.5 s" in stderr.splitlines()[-1]


async def test_top_is_once_when_stdout_is_not_a_terminal(fake: FakeCurator) -> None:
    async with run("top", endpoint(fake)) as top:
        assert "0 nodes, 0 up" in await top.line()
        status, stderr = await top.wait()
    assert status == EXIT_OK, stderr


class Terminal:
    """A pseudo-terminal of 30 rows of 120 columns: a command's side and ours."""

    def __init__(self) -> None:
        controller, self.fd = pty.openpty()
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
        self.screen = trio.lowlevel.FdStream(controller)
        self.output = b""

    async def read_until(self, text: str) -> None:
        """Read what the command wrote until ``text`` has appeared."""
        with trio.fail_after(STARTUP_TIMEOUT):
            while text.encode() not in self.output:
                self.output += await self.screen.receive_some()

    async def close(self) -> None:
        os.close(self.fd)
        await self.screen.aclose()


@contextlib.asynccontextmanager
async def top_in_a_terminal(
    fake: FakeCurator, term: str
) -> AsyncIterator[tuple[Command, Terminal]]:
    """``trionodes top`` with a terminal as stdin and stdout, of type ``term``."""
    terminal = Terminal()
    env = {**os.environ, "TERM": term}
    command = ["top", "--interval", "0.2", endpoint(fake)]
    try:
        async with run(*command, stdout=terminal.fd, stdin=terminal.fd, env=env) as top:
            yield top, terminal
    finally:
        await terminal.close()


async def test_top_keeps_a_terminal_up_to_date(fake: FakeCurator) -> None:
    fake.put(make_node(1), make_node(2))
    async with top_in_a_terminal(fake, "xterm-256color") as (top, terminal):
        await terminal.read_until("2 nodes, 2 up")
        await terminal.read_until("live")  # styled apart, after an escape sequence
        await terminal.read_until("metropolis-…00000002")
        fake.put(make_node(3, state=NodeState.NEW))
        await terminal.read_until("3 nodes, 2 up")
        await terminal.read_until("joined")
        status, stderr = await top.interrupt()
    assert status == EXIT_OK, stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("term", ["dumb", "unknown"])
async def test_top_is_once_in_a_terminal_that_cannot_redraw(fake: FakeCurator, term: str) -> None:
    async with top_in_a_terminal(fake, term) as (top, terminal):
        status, stderr = await top.wait()  # no Ctrl-C: it ends by itself
        await terminal.read_until("0 nodes, 0 up")
    assert status == EXIT_OK, stderr


async def test_top_that_never_connected_counts_attempts_not_reconnects() -> None:
    terminal = Terminal()
    env = {**os.environ, "TERM": "xterm-256color"}
    command = ["top", "--interval", "0.2", f"127.0.0.1:{closed_port()}"]
    try:
        async with run(*command, stdout=terminal.fd, stdin=terminal.fd, env=env) as top:
            await terminal.read_until("not connected yet")
            await terminal.read_until("attempts")  # a second attempt, at least
            status, stderr = await top.interrupt()
    finally:
        await terminal.close()
    assert status == EXIT_OK, stderr
    assert b"reconnect" not in terminal.output.replace(b"reconnecting in", b"")
