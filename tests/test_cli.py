"""The command line: its formatting, and ``trionodes demo`` run as a real process."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest
import trio
import trio.testing
from click.testing import CliRunner

import trionodes
from trionodes import Node, NodeState
from trionodes._cli import (
    ChangePrinter,
    demo_nodes,
    diff_nodes,
    format_deleted,
    format_header,
    format_new,
    format_updated,
    full_id,
    main,
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
