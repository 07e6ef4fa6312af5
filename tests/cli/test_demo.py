"""`trionodes demo`: the simulated cluster it starts, the batches it prints, and the
command run for real (its duration, Ctrl-C, an error)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import trio
from click.testing import CliRunner

import trionodes
from trionodes import NodeState
from trionodes.cli import EXIT_ERROR
from trionodes.cli._app import app
from trionodes.cli._cluster import demo_nodes
from trionodes.cli._format import roles_text
from trionodes.cli.demo import LEGEND, NEXT_STEP, ChangePrinter
from trionodes.testing import FakeCurator, make_node

from .process import (
    CLI,
    EXIT_TIMEOUT,
    STARTUP_TIMEOUT,
    read_until,
)


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
    one, two = make_node(1).id, make_node(2).id
    assert written == [
        "initial cluster: 2 nodes\n"
        f"  + {one}  UP       10.0.0.1        worker\n"
        f"  + {two}  UP       10.0.0.2        worker",
        f"batch 2\n  ~ {one}  state UP -> STANDBY\n  - {two}  (was UP 10.0.0.2)",
        "batch 3",
    ]


async def test_change_printer_follows_a_cluster(
    fake: FakeCurator, curator: trionodes.Curator
) -> None:
    fake.put(*demo_nodes(4))
    written: list[str] = []
    second = trio.Event()

    def write(text: str) -> None:
        written.append(text)
        if len(written) == 2:
            second.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(trionodes.watch_nodes, curator, ChangePrinter(write))
        ids = [make_node(index).id for index in range(6)]
        assert written == [
            "initial cluster: 4 nodes\n"
            f"  + {ids[1]}  UP       10.0.0.1        controller,consensus\n"
            f"  + {ids[2]}  UP       10.0.0.2        worker,controller,consensus\n"
            f"  + {ids[3]}  UP       10.0.0.3        worker,controller,consensus\n"
            f"  + {ids[4]}  NEW      10.0.0.4        worker"
        ]
        fake.change(put=[make_node(4), make_node(5)], delete=[make_node(2).id])
        # The stream may be read in another thread, which wait_all_tasks_blocked does not
        # wait for: wait for the batch itself.
        with trio.fail_after(STARTUP_TIMEOUT):
            await second.wait()
        assert written[1:] == [
            "batch 2\n"
            f"  ~ {ids[4]}  state NEW -> UP\n"
            f"  + {ids[5]}  UP       10.0.0.5        worker\n"
            f"  - {ids[2]}  (was UP 10.0.0.2)"
        ]
        nursery.cancel_scope.cancel()


def test_help_mentions_every_option() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "demo" in result.output
    result = runner.invoke(app, ["demo", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--duration SECONDS", "--nodes N", "--churn PER_SECOND", "--seed S"):
        assert option in result.output
    assert "Ctrl-C" in result.output


def test_bad_option_is_refused() -> None:
    result = CliRunner().invoke(app, ["demo", "--nodes", "-1"])
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
    # What `batch N` and the marks mean, once, before the first of them.
    assert lines[1:3] == list(LEGEND)
    assert "`batch N`" in lines[1]
    assert lines[2].startswith("+ a node joined")
    assert "~ a node changed" in lines[2]
    assert "- a node left" in lines[2]
    assert lines[3] == "initial cluster: 6 nodes"
    # Whole ids, as every other command takes them.
    assert lines[4] == f"  + {make_node(1).id}  UP       10.0.0.1        controller,consensus"
    assert "batch 2" in lines
    assert any(line.startswith("  ~ metropolis-0") for line in lines)
    assert not any("…" in line for line in lines)
    # Then what to try next.
    assert lines[-2:] == ["time's up, bye", NEXT_STEP]
    assert "`trionodes serve`" in NEXT_STEP
    assert "`trionodes watch`" in NEXT_STEP
    assert "`trionodes top`" in NEXT_STEP


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
    assert (before + out).decode().endswith(f"interrupted, bye\n{NEXT_STEP}\n")


# Ctrl-C while asyncio code runs (the gRPC connection being made, on the loop under
# it): raised there, KeyboardInterrupt could kill that loop and leave the main task
# waiting forever for the connection. The demo must still end cleanly. The hook is
# asyncio's own `create_connection`, which every grpclib client calls, so the test does
# not depend on how the transport runs asyncio.
CTRL_C_WHILE_CONNECTING = """
import asyncio, os, signal
from trionodes.cli import main

original = asyncio.BaseEventLoop.create_connection

async def create_connection(self, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)
    return await original(self, *args, **kwargs)

asyncio.BaseEventLoop.create_connection = create_connection
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
    assert result.stdout.endswith(f"interrupted, bye\n{NEXT_STEP}\n")


# An error ends the demo like any command: one `trionodes: error:` line, no traceback.
DEMO_REFUSED = """
import contextlib
import trionodes
import trionodes.cli.demo
from trionodes.cli import main

original = trionodes.cli.demo.open_fake_curator

@contextlib.asynccontextmanager
async def refusing_fake_curator(*args, **kwargs):
    async with original(*args, **kwargs) as fake:
        fake.authorize = lambda cert: trionodes.CuratorError(
            trionodes.StatusCode.PERMISSION_DENIED, "not an owner"
        )
        yield fake

trionodes.cli.demo.open_fake_curator = refusing_fake_curator
main(["demo", "--duration", "60"])
"""


def test_demo_error_exits_with_one_error_line() -> None:
    result = subprocess.run(
        [sys.executable, "-c", DEMO_REFUSED],
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
        check=False,
    )
    assert result.returncode == EXIT_ERROR, result.stderr
    assert result.stderr == "trionodes: error: Curator answered PERMISSION_DENIED: not an owner\n"
    assert result.stdout.startswith("fake Curator on 127.0.0.1:")
    assert "bye" not in result.stdout
