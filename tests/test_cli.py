"""The command line: formatting, following, and every command run as a real process.

Commands that talk to a Curator run as subprocesses against the fake Curator served
from the test's own event loop, read line by line as they print.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import io
import json
import logging
import os
import pty
import re
import select
import shlex
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import click
import pytest
import trio
import trio.lowlevel
import trio.testing
import trustme
from click.testing import CliRunner
from rich.console import Console

import trionodes
from trionodes import BatchKind, Node, NodeBatch, NodeState, StatusCode, WatchStats
from trionodes._cli import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    ChangeLog,
    ChangePrinter,
    NodeTable,
    age_text,
    connection_text,
    demo_nodes,
    diff_nodes,
    format_deleted,
    format_header,
    format_new,
    format_updated,
    full_id,
    main,
    node_record,
    parse_endpoint,
    render_table,
    roles_text,
    short_id,
)
from trionodes._proto.metropolis.proto.common import NodeStatus
from trionodes.testing import FakeCurator, make_node

CLI = [sys.executable, "-m", "trionodes._cli"]
# Generous: a loaded CI machine takes a while to start Python and import grpclib.
STARTUP_TIMEOUT = 30.0
# How long the process may take to end after Ctrl-C.
EXIT_TIMEOUT = 5.0

# Formatting.


def test_short_id() -> None:
    assert short_id(make_node(1).id) == "metropolis-…0001"
    assert short_id(make_node(0xABCDEF).id) == "metropolis-…cdef"
    assert short_id("metropolis-12345") == "metropolis-12345"
    assert short_id("0123456789abcdef") == "…cdef"
    assert short_id("node-1") == "node-1"


def test_format_new() -> None:
    node = make_node(1, worker=False, controller=True, consensus=True)
    assert format_new(node) == "+ metropolis-…0001  UP       10.0.0.1        controller,consensus"
    assert format_new(make_node(2, state=NodeState.NEW)) == (
        "+ metropolis-…0002  NEW      10.0.0.2        worker"
    )
    assert format_new(node, full_id) == (
        "+ metropolis-00000000000000000000000000000001  UP       10.0.0.1        "
        "controller,consensus"
    )


def test_format_new_of_a_bare_node() -> None:
    assert format_new(Node(id="metropolis-abc")) == "+ metropolis-abc  INVALID  -               -"
    assert format_new(Node(id="n", state=NodeState(7))) == "+ n  UNKNOWN(7) -               -"


def test_format_deleted() -> None:
    assert format_deleted(make_node(5)) == "- metropolis-…0005  (was UP 10.0.0.5)"
    assert format_deleted(make_node(5), full_id) == (
        "- metropolis-00000000000000000000000000000005  (was UP 10.0.0.5)"
    )


def test_format_updated_address() -> None:
    assert format_updated(make_node(3), make_node(3, address="10.4.7.9")) == (
        "~ metropolis-…0003  address 10.0.0.3 -> 10.4.7.9"
    )


def test_diff_nodes_each_field() -> None:
    base = make_node(3, state=NodeState.NEW)
    assert diff_nodes(base, base) == []
    assert diff_nodes(base, make_node(3)) == ["state NEW -> UP"]
    assert diff_nodes(base, make_node(3, state=NodeState.NEW, controller=True)) == [
        "roles worker -> worker,controller"
    ]
    assert diff_nodes(base, make_node(3, state=NodeState.NEW, worker=False)) == [
        "roles worker -> -"
    ]
    relabelled = make_node(3, state=NodeState.NEW, labels={"rack": "r9", "team": "db"})
    assert diff_nodes(base, relabelled) == ["labels -rack=r3 -zone=z0 +rack=r9 +team=db"]
    moved = make_node(3, state=NodeState.NEW)
    assert moved.clusternet is not None
    moved.clusternet.prefixes[0].cidr = "10.192.77.0/24"
    assert diff_nodes(base, moved) == ["prefixes -10.192.3.0/24 +10.192.77.0/24"]


def test_diff_nodes_several_fields_in_order() -> None:
    before = make_node(4, state=NodeState.STANDBY, controller=True)
    after = make_node(4, address="10.9.9.9", labels={})
    assert diff_nodes(before, after) == [
        "state STANDBY -> UP",
        "address 10.0.0.4 -> 10.9.9.9",
        "roles worker,controller -> worker",
        "labels -rack=r4 -zone=z1",
    ]
    assert format_updated(before, after) == (
        "~ metropolis-…0004  state STANDBY -> UP, address 10.0.0.4 -> 10.9.9.9, "
        "roles worker,controller -> worker, labels -rack=r4 -zone=z1"
    )


def test_diff_nodes_of_fields_not_shown() -> None:
    # Another node's status: only its timestamp and boot id differ from node 1's.
    other = make_node(2, address="10.0.0.1")
    assert other.status is not None
    node = make_node(1)
    node.status = other.status
    assert diff_nodes(make_node(1), node) == ["other fields"]
    bare = Node(id="n")
    assert diff_nodes(bare, Node(id="n", status=NodeStatus(external_address="10.1.1.1"))) == [
        "address - -> 10.1.1.1"
    ]


def test_format_header() -> None:
    assert format_header(1, 6) == "initial cluster: 6 nodes"
    assert format_header(1, 1) == "initial cluster: 1 node"
    assert format_header(7, 3) == "batch 7"


def test_demo_nodes() -> None:
    nodes = list(demo_nodes(6))
    assert [node.id for node in nodes] == [make_node(i).id for i in range(1, 7)]
    assert [roles_text(node) for node in nodes] == [
        "controller,consensus",
        "worker,controller,consensus",
        "worker,controller,consensus",
        "worker",
        "worker",
        "worker",
    ]
    assert [node.state for node in nodes].count(NodeState.NEW) == 1
    assert nodes[-1].state is NodeState.NEW
    assert all(node.state is NodeState.UP for node in demo_nodes(3))
    assert list(demo_nodes(0)) == []


# Following.


def test_change_printer_writes_one_block_per_batch() -> None:
    written: list[str] = []
    printer: trionodes.Follower = ChangePrinter(written.append)
    printer.new(make_node(1))
    printer.new(make_node(2))
    printer.batch_done()
    printer.updated(make_node(1), make_node(1, state=NodeState.STANDBY))
    printer.deleted(make_node(2))
    printer.batch_done()
    printer.batch_done()
    assert written == [
        "initial cluster: 2 nodes\n"
        "  + metropolis-…0001  UP       10.0.0.1        worker\n"
        "  + metropolis-…0002  UP       10.0.0.2        worker",
        "batch 2\n"
        "  ~ metropolis-…0001  state UP -> STANDBY\n"
        "  - metropolis-…0002  (was UP 10.0.0.2)",
        "batch 3",
    ]


async def test_change_printer_follows_a_cluster(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(*demo_nodes(4))
    written: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(trionodes.watch_nodes, curator, ChangePrinter(written.append))
        assert written == [
            "initial cluster: 4 nodes\n"
            "  + metropolis-…0001  UP       10.0.0.1        controller,consensus\n"
            "  + metropolis-…0002  UP       10.0.0.2        worker,controller,consensus\n"
            "  + metropolis-…0003  UP       10.0.0.3        worker,controller,consensus\n"
            "  + metropolis-…0004  NEW      10.0.0.4        worker"
        ]
        fake.change(put=[make_node(4), make_node(5)], delete=[make_node(2).id])
        await trio.testing.wait_all_tasks_blocked()
        assert written[1:] == [
            "batch 2\n"
            "  ~ metropolis-…0004  state NEW -> UP\n"
            "  + metropolis-…0005  UP       10.0.0.5        worker\n"
            "  - metropolis-…0002  (was UP 10.0.0.2)"
        ]
        nursery.cancel_scope.cancel()


# The command.


def test_help_mentions_every_option() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert "demo" in result.output
    result = runner.invoke(main, ["demo", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--duration SECONDS", "--nodes N", "--churn PER_SECOND", "--seed S"):
        assert option in result.output
    assert "Ctrl-C" in result.output


def test_bad_option_is_refused() -> None:
    result = CliRunner().invoke(main, ["demo", "--nodes", "-1"])
    assert result.exit_code == 2
    assert "--nodes" in result.output


def test_demo_runs_for_its_duration() -> None:
    result = subprocess.run(
        [*CLI, "demo", "--duration", "2", "--churn", "20", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT + 2,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("fake Curator on 127.0.0.1:")
    assert lines[1] == "initial cluster: 6 nodes"
    assert lines[2] == "  + metropolis-…0001  UP       10.0.0.1        controller,consensus"
    assert "batch 2" in lines
    assert any(line.startswith("  ~ metropolis-…") for line in lines)
    assert lines[-1] == "time's up, bye"


def read_until(process: subprocess.Popen[bytes], text: bytes, timeout: float) -> bytes:
    """Read the process's stdout until ``text`` has appeared; return what was read."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    output = b""
    while text not in output:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            pytest.fail(f"no {text!r} after {timeout} s; output so far: {output!r}")
        chunk = os.read(fd, 65536)
        if not chunk:
            pytest.fail(f"stdout closed before {text!r}; output: {output!r}")
        output += chunk
    return output


# Right after the first line, Ctrl-C lands while the client connects; after "batch 2",
# while changes stream.
@pytest.mark.parametrize("wait_for", [b"fake Curator on", b"batch 2"])
def test_ctrl_c_ends_demo_promptly(wait_for: bytes) -> None:
    process = subprocess.Popen(
        [*CLI, "demo", "--churn", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    try:
        before = read_until(process, wait_for, STARTUP_TIMEOUT)
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {EXIT_TIMEOUT} s after SIGINT")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err.decode()
    assert b"Traceback" not in err, err.decode()
    assert (before + out).decode().endswith("interrupted, bye\n")


# Ctrl-C while asyncio code runs on the trio-asyncio loop: raised there, KeyboardInterrupt
# would kill the loop and leave the main task waiting forever for the connection it was
# making. The demo must get it in the main task instead.
CTRL_C_WHILE_CONNECTING = """
import os, signal
import trionodes._transport as transport
from trionodes._cli import main

original = transport._make_channel

async def make_channel(*args):
    os.kill(os.getpid(), signal.SIGINT)
    return await original(*args)

transport._make_channel = make_channel
main(["demo"])
"""


def test_ctrl_c_while_asyncio_code_runs() -> None:
    try:
        result = subprocess.run(
            [sys.executable, "-c", CTRL_C_WHILE_CONNECTING],
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the demo hung after Ctrl-C while connecting")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout.endswith("interrupted, bye\n")


# `trionodes watch`: its output.

NOW = datetime.datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=datetime.UTC)
CLOCK = f"{NOW.astimezone():%H:%M:%S}"


def test_node_record() -> None:
    node = make_node(1, controller=True, consensus=True, curator_port=7835)
    assert node_record(node) == {
        "id": "metropolis-00000000000000000000000000000001",
        "state": "UP",
        "address": "10.0.0.1",
        "roles": ["worker", "controller", "consensus"],
        "labels": {"rack": "r1", "zone": "z1"},
        "wireguard_pubkey": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=",
        "prefixes": ["10.192.1.0/24"],
        "curator_port": 7835,
        "version": "0.3.1",
    }
    assert node_record(Node(id="n")) == {
        "id": "n",
        "state": "INVALID",
        "address": None,
        "roles": [],
        "labels": {},
        "wireguard_pubkey": None,
        "prefixes": [],
        "curator_port": None,
        "version": None,
    }


def batch(
    kind: BatchKind,
    new: tuple[Node, ...] = (),
    updated: tuple[tuple[Node, Node], ...] = (),
    deleted: tuple[Node, ...] = (),
    nodes: int = 0,
) -> NodeBatch:
    view = {make_node(index).id: make_node(index) for index in range(nodes)}
    return NodeBatch(new, updated, deleted, view, kind)


def test_change_log_json() -> None:
    lines: list[str] = []
    log = ChangeLog(lines.append, as_json=True, now=lambda: NOW)
    log.batch(batch(BatchKind.INITIAL, new=(make_node(1), make_node(2)), nodes=2))
    moved = make_node(2, address="10.9.9.9", labels={})
    log.batch(
        batch(
            BatchKind.LIVE,
            new=(make_node(3),),
            updated=((make_node(2), moved),),
            deleted=(make_node(1),),
            nodes=2,
        )
    )
    log.batch(batch(BatchKind.RESYNC, deleted=(make_node(3),), nodes=1))
    records = [json.loads(line) for line in lines]
    assert all(record.pop("time") == "2026-03-04T05:06:07.890+00:00" for record in records)
    assert records == [
        {"event": "new", "node": node_record(make_node(1))},
        {"event": "new", "node": node_record(make_node(2))},
        {"event": "synced", "nodes": 2},
        # New and updated in node id order, then deletions.
        {"event": "updated", "node": node_record(moved), "changed": ["address", "labels"]},
        {"event": "new", "node": node_record(make_node(3))},
        {"event": "deleted", "node": node_record(make_node(1))},
        {"event": "deleted", "node": node_record(make_node(3))},
        {"event": "resynced", "nodes": 1},
    ]


def test_change_log_text() -> None:
    lines: list[str] = []
    log = ChangeLog(lines.append, as_json=False, now=lambda: NOW)
    log.batch(batch(BatchKind.INITIAL, new=(make_node(1),), nodes=1))
    log.batch(batch(BatchKind.INITIAL, nodes=0))
    log.updated(make_node(1), make_node(1, state=NodeState.STANDBY))
    log.deleted(make_node(1, state=NodeState.STANDBY))
    node_1 = make_node(1).id
    assert lines == [
        f"{CLOCK} + {node_1}  UP       10.0.0.1        worker",
        f"{CLOCK} synced: 1 node",
        f"{CLOCK} synced: 0 nodes",
        f"{CLOCK} ~ {node_1}  state UP -> STANDBY",
        f"{CLOCK} - {node_1}  (was STANDBY 10.0.0.1)",
    ]


# `trionodes top`: its table.


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_age_text() -> None:
    assert [age_text(s) for s in (0, 59.9, 60, 3599, 3600, 86399, 86400 * 3)] == [
        "0s",
        "59s",
        "1m",
        "59m",
        "1h",
        "23h",
        "3d",
    ]


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


LIVE = WatchStats(connected=True, synced=True)


def test_connection_text() -> None:
    lost = trionodes.ConnectionLost("gone")
    assert [
        connection_text(stats).plain
        for stats in (
            WatchStats(),
            WatchStats(connected=True),
            LIVE,
            WatchStats(last_error=lost),
            WatchStats(last_error=lost, reconnects=1),
            WatchStats(connected=True, synced=True, last_error=lost, reconnects=2),
        )
    ] == [
        "connecting",
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
        "trionodes top · h:1 · waiting for the cluster… · connecting"
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


# The command line: arguments.


def test_parse_endpoint() -> None:
    ctx, argument = click.Context(main), click.Argument(["endpoint"])
    assert parse_endpoint(ctx, argument, "127.0.0.1:7835") == ("127.0.0.1", 7835)
    assert parse_endpoint(ctx, argument, "[::1]:1") == ("::1", 1)
    assert parse_endpoint(ctx, argument, "curator.example:65535") == ("curator.example", 65535)


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("localhost", "is not HOST:PORT"),
        (":7835", "is not HOST:PORT"),
        ("::1:7835", "IPv6 address in brackets"),
        ("host:0", "port must be a number from 1 to 65535"),
        ("host:65536", "port must be a number from 1 to 65535"),
        ("host:http", "port must be a number from 1 to 65535"),
    ],
)
def test_bad_endpoint_is_a_usage_error(endpoint: str, message: str) -> None:
    for command in ("watch", "top"):
        result = CliRunner().invoke(main, [command, endpoint])
        assert result.exit_code == EXIT_USAGE
        assert message in result.output


def test_tls_options_go_together(tmp_path: Path) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("not a certificate\n")
    runner = CliRunner()
    result = runner.invoke(main, ["watch", "h:1", "--ca", str(pem)])
    assert result.exit_code == EXIT_USAGE
    assert "TLS needs --ca, --cert and --key together (got --ca)" in result.output
    result = runner.invoke(main, ["top", "h:1", "--server-hostname", "curator"])
    assert result.exit_code == EXIT_USAGE
    assert "need TLS" in result.output
    result = runner.invoke(main, ["watch", "h:1", "--ca", str(tmp_path / "missing.pem")])
    assert result.exit_code == EXIT_USAGE
    assert "does not exist" in result.output
    tls = ["--ca", str(pem), "--cert", str(pem), "--key", str(pem)]
    result = runner.invoke(main, ["watch", "h:1", *tls])
    assert result.exit_code == EXIT_USAGE
    assert "cannot use the certificate files" in result.output


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("watch", ["--node ID", "--json", "--ca FILE", "--cert FILE", "--key FILE",
                   "--server-hostname NAME", "--no-check-hostname"]),
        ("top", ["--interval SECONDS", "--once", "--ca FILE", "--cert FILE", "--key FILE",
                 "--server-hostname NAME", "--no-check-hostname"]),
        ("serve", ["--host ADDRESS", "--port PORT", "--nodes N", "--churn PER_SECOND",
                   "--seed S", "--tls DIR"]),
    ],
)  # fmt: skip
def test_help_explains_every_option_and_exit_status(command: str, options: list[str]) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    for option in options:
        assert option in result.output
    assert "Exit status:" in result.output
    for status in (EXIT_OK, EXIT_ERROR, EXIT_USAGE):
        assert f"\n    {status}  " in result.output


# The command line: commands run as processes.


class Command:
    """A ``trionodes`` command running as a subprocess, its output read line by line."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._stdout = b""
        self._stderr = b""

    async def line(self) -> str:
        """The next line of stdout (fails the test if it does not come)."""
        return await self._line("_stdout", self.process.stdout)

    async def error_line(self) -> str:
        """The next line of stderr."""
        return await self._line("_stderr", self.process.stderr)

    async def _line(self, buffer_name: str, stream: Any) -> str:
        buffer: bytes = getattr(self, buffer_name)
        with trio.fail_after(STARTUP_TIMEOUT):
            while b"\n" not in buffer:
                chunk = await stream.receive_some()
                if not chunk:
                    pytest.fail(f"{buffer_name[1:]} ended; read: {buffer!r}")
                buffer += chunk
        line, _, rest = buffer.partition(b"\n")
        setattr(self, buffer_name, rest)
        return line.decode()

    async def wait(self) -> tuple[int, str]:
        """Wait for the exit; return the status and the rest of stderr."""
        with trio.fail_after(STARTUP_TIMEOUT):
            status = await self.process.wait()
            assert self.process.stderr is not None
            while chunk := await self.process.stderr.receive_some():
                self._stderr += chunk
        return status, self._stderr.decode()

    async def interrupt(self) -> tuple[int, str]:
        """Send Ctrl-C (SIGINT) and wait for the exit."""
        self.process.send_signal(signal.SIGINT)
        return await self.wait()


@contextlib.asynccontextmanager
async def run(*args: str, **kwargs: Any) -> AsyncIterator[Command]:
    """Start ``args`` (a ``trionodes`` command line, or any one starting with python)."""
    argv = list(args) if args[0] == sys.executable else [*CLI, *args]
    options: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}
    process = await trio.lowlevel.open_process(argv, **options)
    try:
        yield Command(process)
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    await stream.aclose()


def endpoint(fake: FakeCurator) -> str:
    return f"{fake.host}:{fake.port}"


TIME = re.compile(r"^\d\d:\d\d:\d\d ")


def untimed(line: str) -> str:
    assert TIME.match(line), line
    return TIME.sub("", line)


async def test_watch_prints_each_change_until_ctrl_c(fake: FakeCurator) -> None:
    fake.put(*demo_nodes(4))
    ids = [make_node(index).id for index in range(1, 6)]
    async with run("watch", endpoint(fake)) as watch:
        assert [untimed(await watch.line()) for _ in range(5)] == [
            f"+ {ids[0]}  UP       10.0.0.1        controller,consensus",
            f"+ {ids[1]}  UP       10.0.0.2        worker,controller,consensus",
            f"+ {ids[2]}  UP       10.0.0.3        worker,controller,consensus",
            f"+ {ids[3]}  NEW      10.0.0.4        worker",
            "synced: 4 nodes",
        ]
        fake.change(put=[make_node(4), make_node(5)], delete=[ids[1]])
        assert [untimed(await watch.line()) for _ in range(3)] == [
            f"~ {ids[3]}  state NEW -> UP",
            f"+ {ids[4]}  UP       10.0.0.5        worker",
            f"- {ids[1]}  (was UP 10.0.0.2)",
        ]
        status, stderr = await watch.interrupt()
    assert status == EXIT_OK, stderr
    assert stderr == ""


async def test_watch_json(fake: FakeCurator) -> None:
    fake.put(make_node(1))
    async with run("watch", "--json", endpoint(fake)) as watch:
        first, synced = json.loads(await watch.line()), json.loads(await watch.line())
        assert first["event"] == "new"
        assert first["node"] == node_record(make_node(1))
        assert datetime.datetime.fromisoformat(first["time"]).tzinfo is not None
        assert synced["event"] == "synced"
        assert synced["nodes"] == 1
        fake.put(make_node(1, state=NodeState.DECOMMISSIONED))
        updated = json.loads(await watch.line())
        assert updated["event"] == "updated"
        assert updated["node"]["state"] == "DECOMMISSIONED"
        assert updated["changed"] == ["state"]
        fake.delete(make_node(1).id)
        deleted = json.loads(await watch.line())
        assert (deleted["event"], deleted["node"]["id"]) == ("deleted", make_node(1).id)
        status, stderr = await watch.interrupt()
    assert status == EXIT_OK, stderr


async def test_watch_one_node_ends_when_it_is_deleted(fake: FakeCurator) -> None:
    node_id = make_node(2).id
    fake.put(make_node(1))
    async with run("watch", "--json", "--node", node_id, endpoint(fake)) as watch:
        fake.put(make_node(1, state=NodeState.STANDBY), make_node(2, state=NodeState.NEW))
        assert json.loads(await watch.line())["node"] == node_record(
            make_node(2, state=NodeState.NEW)
        )
        fake.put(make_node(2))
        updated = json.loads(await watch.line())
        assert (updated["event"], updated["changed"]) == ("updated", ["state"])
        fake.delete(node_id)
        deleted = json.loads(await watch.line())
        assert (deleted["event"], deleted["node"]["state"]) == ("deleted", "UP")
        status, stderr = await watch.wait()  # no Ctrl-C: the command ends by itself
    assert status == EXIT_OK, stderr


async def test_watch_refused_by_the_curator_exits_with_an_error(fake: FakeCurator) -> None:
    fake.authorize = lambda cert: trionodes.CuratorError(
        StatusCode.PERMISSION_DENIED, "not an owner"
    )
    async with run("watch", endpoint(fake)) as watch:
        status, stderr = await watch.wait()
    assert status == EXIT_ERROR
    assert stderr == "trionodes: error: Curator answered PERMISSION_DENIED: not an owner\n"


async def test_watch_with_tls_against_plain_text_exits_with_a_hint(
    fake: FakeCurator, tmp_path: Path
) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ca.issue_cert("client@example").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "client.pem")
    )
    client = str(tmp_path / "client.pem")
    tls = ["--ca", str(tmp_path / "ca.pem"), "--cert", client, "--key", client]
    async with run("watch", endpoint(fake), *tls) as watch:
        status, stderr = await watch.wait()
    assert status == EXIT_ERROR
    error, hint = stderr.splitlines()
    assert error.startswith("trionodes: error: TLS handshake with ")
    assert error.endswith("the Curator does not seem to serve TLS there (WRONG_VERSION_NUMBER)")
    assert hint.startswith("trionodes: hint: TLS needs --ca (the cluster CA), --cert and --key")


async def test_watch_reports_a_reconnect_on_stderr_and_goes_on(fake: FakeCurator) -> None:
    fake.put(make_node(1))
    async with run("watch", endpoint(fake)) as watch:
        assert untimed(await watch.line()).startswith("+ ")
        assert untimed(await watch.line()) == "synced: 1 node"
        fake.fail_streams(StatusCode.UNAVAILABLE, "leader lost")
        warning = await watch.error_line()
        assert "WARNING" in warning
        assert "leader lost" in warning
        fake.put(make_node(1, state=NodeState.STANDBY))  # seen after the resync
        assert untimed(await watch.line()) == f"~ {make_node(1).id}  state UP -> STANDBY"
        status, stderr = await watch.interrupt()
    assert status == EXIT_OK, stderr


async def test_watch_ends_quietly_when_its_reader_goes_away(fake: FakeCurator) -> None:
    fake.put(make_node(1))
    async with run("watch", endpoint(fake)) as watch:
        await watch.line()
        assert watch.process.stdout is not None
        await watch.process.stdout.aclose()  # like `trionodes watch | head -1`
        fake.put(make_node(1, state=NodeState.STANDBY))  # a change to print
        status, stderr = await watch.wait()
    assert status == EXIT_OK, stderr
    assert stderr == ""


async def test_top_once_prints_the_cluster(fake: FakeCurator) -> None:
    fake.put(*demo_nodes(4))
    async with run("top", "--once", endpoint(fake)) as top:
        title = await top.line()
        lines = [await top.line() for _ in range(7)]
        status, stderr = await top.wait()
    assert status == EXIT_OK, stderr
    assert title.strip() == f"trionodes top · {endpoint(fake)} · 4 nodes, 3 up · live"
    rows = [line.split() for line in lines if "metropolis" in line]
    assert rows == [
        ["metropolis-…00000001", "UP", "10.0.0.1", "controller,consensus", "-", "-"],
        ["metropolis-…00000002", "UP", "10.0.0.2", "worker,controller,consensus", "-", "-"],
        ["metropolis-…00000003", "UP", "10.0.0.3", "worker,controller,consensus", "-", "-"],
        ["metropolis-…00000004", "NEW", "10.0.0.4", "worker", "-", "-"],
    ]


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


async def test_serve_runs_a_curator_until_ctrl_c() -> None:
    async with run("serve", "--nodes", "3", "--churn", "0") as serve:
        first = await serve.line()
        match = re.fullmatch(
            r"fake Curator listening on 127\.0\.0\.1:(\d+): 3 nodes, 0 changes/s; Ctrl-C to stop",
            first,
        )
        assert match, first
        port = int(match[1])
        assert await serve.line() == f"follow it with: trionodes watch 127.0.0.1:{port}"
        async with (
            trionodes.open_curator("127.0.0.1", port) as curator,
            trionodes.open_node_changes(curator) as changes,
        ):
            initial = await changes.receive()
        assert [node.id for node in initial.new] == [make_node(i).id for i in (1, 2, 3)]
        status, stderr = await serve.interrupt()
    assert status == EXIT_OK, stderr
    assert stderr == ""


async def test_serve_over_tls_and_the_watch_command_it_prints(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    async with run("serve", "--nodes", "2", "--churn", "0", "--tls", str(tls)) as serve:
        assert "with mutual TLS" in await serve.line()
        assert await serve.line() == (
            f"certificates in {tls}: ca.pem (the CA), client.pem, client-key.pem"
        )
        command = (await serve.line()).removeprefix("follow it with: ")
        words = shlex.split(command)
        assert words[:2] == ["trionodes", "watch"]
        assert words[3:] == [
            "--ca", str(tls / "ca.pem"),
            "--cert", str(tls / "client.pem"),
            "--key", str(tls / "client-key.pem"),
        ]  # fmt: skip
        assert (tls / "client-key.pem").stat().st_mode & 0o777 == 0o600
        async with run(*words[1:], "--json") as watch:
            assert json.loads(await watch.line())["node"]["id"] == make_node(1).id
            assert json.loads(await watch.line())["node"]["id"] == make_node(2).id
            assert json.loads(await watch.line())["event"] == "synced"
            status, stderr = await watch.interrupt()
            assert status == EXIT_OK, stderr
        status, stderr = await serve.interrupt()
    assert status == EXIT_OK, stderr


async def test_serve_on_a_port_in_use_exits_with_an_error(fake: FakeCurator) -> None:
    async with run("serve", "--port", str(fake.port)) as serve:
        status, stderr = await serve.wait()
    assert status == EXIT_ERROR
    assert stderr.startswith(f"trionodes: error: cannot listen on 127.0.0.1:{fake.port}: ")
