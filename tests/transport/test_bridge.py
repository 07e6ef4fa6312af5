"""The bridge: grpclib on a worker-thread loop under Trio, natively under asyncio.

Against the real fake Curator on loopback: cancels reach the asyncio side even when
its thread is busy, errors come back typed, nothing is left behind after many
connections, and a connection stays in the ``trio.run`` that opened it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import trio
import trio.testing

import trionodes
from trionodes import ConnectionLost, WatchRequest
from trionodes._proto.metropolis.node.core.curator.proto.api import WatchRequestNodesInCluster
from trionodes._transport.bridge import NativeBridge, ThreadBridge
from trionodes._transport.client import _QUEUE_LIMIT, MessageStream
from trionodes._transport.grpclib_private import TracedChannel
from trionodes.testing import FakeCurator, make_node, open_fake_curator, settle

ALL_NODES = WatchRequest(nodes_in_cluster=WatchRequestNodesInCluster())


def bridge_of(curator: trionodes.Curator) -> ThreadBridge:
    bridge = curator._source._bridge  # type: ignore[attr-defined]
    assert isinstance(bridge, ThreadBridge)
    return bridge


def loop_threads() -> list[threading.Thread]:
    """The threads trionodes runs asyncio loops on (not Trio's own worker cache)."""
    return [thread for thread in threading.enumerate() if thread.name == "trionodes-asyncio"]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def task_count() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(child) for n in task.child_nurseries for child in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


async def test_a_cancel_waits_for_a_busy_loop_thread_then_tears_the_call_down(
    fake: FakeCurator,
) -> None:
    fake.put(make_node(1))
    async with trionodes.open_curator(fake.host, fake.port) as curator:
        async with trionodes.open_node_changes(curator) as changes:
            await changes.receive()
            # The loop thread is stuck in a callback: the cancel must wait for it,
            # not return with the call still open behind it.
            bridge_of(curator).to_loop(time.sleep, 0.5)
            started = time.monotonic()
        assert time.monotonic() - started >= 0.4
        with trio.fail_after(5):
            await fake.wait_idle()
        assert fake.streams_cancelled == 1
        assert fake.active_streams == 0


async def test_an_exception_on_the_loop_thread_arrives_typed(
    fake: FakeCurator, monkeypatch: pytest.MonkeyPatch
) -> None:
    raised_on: list[str] = []

    def broken_request(self: TracedChannel, *args: Any, **kwargs: Any) -> Any:
        raised_on.append(threading.current_thread().name)
        raise RuntimeError("grpclib broke")

    monkeypatch.setattr(TracedChannel, "request", broken_request)
    async with (
        trionodes.open_curator(fake.host, fake.port) as curator,
        curator._open_stream(ALL_NODES) as stream,
    ):
        with pytest.raises(ConnectionLost, match="grpclib broke") as caught:
            await stream.receive()
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert raised_on == ["trionodes-asyncio"]


async def test_a_connection_belongs_to_the_trio_run_that_opened_it(fake: FakeCurator) -> None:
    fake.put(make_node(1))
    async with trionodes.open_curator(fake.host, fake.port) as curator:

        async def use_it() -> None:
            async with trionodes.open_node_changes(curator) as changes:
                await changes.receive()

        with pytest.raises(RuntimeError, match=r"another trio\.run"):
            await trio.to_thread.run_sync(trio.run, use_it)


async def test_a_closed_connection_says_so(fake: FakeCurator) -> None:
    async with trionodes.open_curator(fake.host, fake.port) as curator:
        pass
    with pytest.raises(RuntimeError, match=r"is closed: its `async with open_curator"):
        async with trionodes.open_node_changes(curator) as changes:
            await changes.receive()


def test_two_trio_runs_one_after_the_other() -> None:
    async def sync_once() -> int:
        async with open_fake_curator() as fake:
            fake.put(make_node(1), make_node(2))
            async with (
                trionodes.open_curator(fake.host, fake.port) as curator,
                trionodes.open_node_changes(curator) as changes,
            ):
                return len((await changes.receive()).new)

    assert trio.run(sync_once) == 2
    assert trio.run(sync_once) == 2
    assert loop_threads() == []


async def test_a_hundred_connections_leave_no_thread_fd_or_task(fake: FakeCurator) -> None:
    fake.put(make_node(1))

    async def cycle() -> None:
        async with (
            trionodes.open_curator(fake.host, fake.port) as curator,
            trionodes.open_node_changes(curator) as changes,
        ):
            await changes.receive()

    async def quiet() -> None:
        # The server closes its end of each connection a moment after the client.
        with trio.fail_after(5):
            while fake.open_connections:  # noqa: ASYNC110 (counted on the loop thread)
                await trio.sleep(0.01)
        await settle()

    await cycle()  # first-use costs (imports, caches) out of the count
    await quiet()
    threads, fds, tasks = loop_threads(), open_fds(), task_count()
    for _ in range(100):
        await cycle()
    await quiet()
    assert loop_threads() == threads
    assert open_fds() == fds
    assert task_count() == tasks


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_asyncio_runs_grpclib_on_the_callers_own_loop(backend: str) -> None:
    async def threads_while_watching() -> int:
        async with open_fake_curator() as fake:
            fake.put(make_node(1))
            async with (
                trionodes.open_curator(fake.host, fake.port) as curator,
                trionodes.open_node_changes(curator) as changes,
            ):
                await changes.receive()
                return len(loop_threads())

    # One loop thread for the fake's server, one for the client, under Trio only.
    assert anyio.run(threads_while_watching, backend=backend) == (0 if backend == "asyncio" else 2)
    assert loop_threads() == []


class CountingBridge(NativeBridge):
    """A native bridge that counts wake-ups sent to the host side."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.host_wakes = 0

    def to_host(self, fn: Callable[..., object], *args: Any) -> None:
        self.host_wakes += 1
        super().to_host(fn, *args)


def test_messages_cross_in_batches_with_one_wake_per_batch() -> None:
    async def scenario() -> tuple[int, list[bytes]]:
        bridge = CountingBridge(asyncio.get_running_loop())
        stream = MessageStream(bridge)
        # The host side is not waiting: ten messages, no wake-up at all.
        for index in range(10):
            await stream.put(b"%d" % index)
        received = [await stream.receive() for _ in range(10)]
        assert bridge.host_wakes == 0
        # The host side waits: the first message wakes it, the rest ride along.
        receiver = asyncio.ensure_future(stream.receive())
        await asyncio.sleep(0)
        for index in range(10, 15):
            await stream.put(b"%d" % index)
        received.append(await receiver)
        received.extend([await stream.receive() for _ in range(4)])
        return bridge.host_wakes, received

    wakes, received = asyncio.run(scenario())
    assert wakes == 1
    assert received == [b"%d" % index for index in range(15)]


def test_a_full_queue_holds_the_loop_side_until_the_host_reads() -> None:
    async def scenario() -> bool:
        stream = MessageStream(NativeBridge(asyncio.get_running_loop()))
        for index in range(_QUEUE_LIMIT - 1):
            await stream.put(b"%d" % index)
        last = asyncio.ensure_future(stream.put(b"last"))
        await asyncio.sleep(0.01)
        held = not last.done()
        await stream.receive()
        await asyncio.sleep(0)
        return held and last.done()

    assert asyncio.run(scenario())


STRESS = textwrap.dedent(
    """
    import sys, trio, trionodes
    from functools import partial
    from trionodes.testing import open_fake_curator, make_node, run_churn, settle

    sys.setswitchinterval(1e-6)

    async def main():
        async with open_fake_curator(backlog_nodes_per_event=5) as fake:
            fake.put(*(make_node(i) for i in range(1, 60)))
            async with trionodes.open_curator(fake.host, fake.port) as curator:
                async with trionodes.open_node_watch(curator) as watch:
                    async with trio.open_nursery() as nursery:
                        churn = partial(run_churn, changes_per_second=400.0, target_nodes=60)
                        nursery.start_soon(churn, fake)
                        await watch.wait_synced()
                        await trio.sleep(2)
                        nursery.cancel_scope.cancel()
                    await settle()
                    assert dict(watch.nodes) == dict(fake.nodes), "views differ"
                    print("converged", len(fake.nodes), watch.stats.events_received)

    trio.run(main)
    """
)


def test_stress_with_tiny_switch_interval_in_development_mode() -> None:
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", STRESS],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONDEVMODE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("converged"), result.stdout + result.stderr
    assert "Warning" not in result.stderr, result.stderr
