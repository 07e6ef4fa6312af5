"""A Curator for benchmarks, in its own process: ``python -m benchmarks.server``.

It serves NodesInCluster calls over trionodes' gRPC server half, from the
deterministic cluster of :mod:`benchmarks.cluster`, so that serving costs no CPU in
the process being measured. It prints ``ready PORT``, then obeys one command per line
on stdin, answering each with ``ok``:

* ``cluster N``: the cluster is nodes ``0..N-1``, at generation 0.
* ``change K``: K nodes spread over the cluster move to the next generation (seen
  by the backlog of later calls, as after a reconnect).
* ``stream N``: every open call gets N one-node updates (which leave the cluster
  as it is), then the end marker of :func:`benchmarks.cluster.end_marker`.
* ``fail``: every open call ends with ``UNAVAILABLE``.
* ``quit``: stop.

:class:`CuratorProcess` starts it and sends commands.
"""

from __future__ import annotations

import collections
import itertools
import pathlib
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import anyio
import anyio.to_thread

from trionodes import CuratorError, StatusCode, WatchRequest
from trionodes._transport import serve_watch

from . import cluster

# Messages handed to the server at a time, so that a long stream is made lazily.
_TAKE = 256


class _Call:
    """One Watch call being served: messages and streams of messages, in order."""

    def __init__(self, curator: BenchCurator, messages: list[bytes]) -> None:
        self._curator = curator
        self._pending: collections.deque[bytes | CuratorError | Iterator[bytes]]
        self._pending = collections.deque(messages)
        self._waker: Callable[[], None] = lambda: None

    def push(self, item: bytes | CuratorError | Iterator[bytes]) -> None:
        self._pending.append(item)
        self._waker()

    def take(self) -> list[bytes | CuratorError]:
        items: list[bytes | CuratorError] = []
        while self._pending and len(items) < _TAKE:
            head = self._pending[0]
            if isinstance(head, bytes | CuratorError):
                items.append(head)
                self._pending.popleft()
                continue
            made = list(itertools.islice(head, _TAKE - len(items)))
            if not made:
                self._pending.popleft()
            items += made
        return items

    def set_waker(self, waker: Callable[[], None]) -> None:
        self._waker = waker
        waker()

    def close(self, cancelled: bool) -> None:
        self._curator.calls.discard(self)


class BenchCurator:
    """The served cluster: one generation per node, and the open calls."""

    def __init__(self) -> None:
        self.generations: list[int] = []
        self.calls: set[_Call] = set()
        self._backlog: list[bytes] | None = None

    def open_session(
        self, request: WatchRequest, *, peer_cert: Mapping[str, Any] | None = None
    ) -> _Call:
        if request.nodes_in_cluster is None:
            raise CuratorError(StatusCode.UNIMPLEMENTED, "only NodesInCluster")
        if self._backlog is None:
            self._backlog = cluster.backlog_events(self.generations)
        call = _Call(self, self._backlog)
        self.calls.add(call)
        return call

    def command(self, line: str) -> None:
        name, *args = line.split()
        if name == "cluster":
            self.generations = [0] * int(args[0])
            self._backlog = None
        elif name == "change":
            count = int(args[0])
            nodes = len(self.generations)
            for index in range(0, nodes, max(1, nodes // count))[:count]:
                self.generations[index] += 1
            self._backlog = None
        elif name == "stream":
            nodes = len(self.generations)
            for call in self.calls:
                updates = cluster.updates(nodes, int(args[0]))
                call.push(itertools.chain(updates, [cluster.end_marker(nodes)]))
        elif name == "fail":
            for call in self.calls:
                call.push(CuratorError(StatusCode.UNAVAILABLE, "benchmark"))
        else:
            raise ValueError(f"unknown command {line!r}")


async def _serve() -> None:
    curator = BenchCurator()
    async with serve_watch(curator, "127.0.0.1", 0) as server:
        print("ready", server.port, flush=True)
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if not line or line.strip() == "quit":
                return
            curator.command(line)
            print("ok", flush=True)


class CuratorProcess:
    """Runs the benchmark Curator in a child process; use as a context manager.

    Attributes:
        port: The port it serves on (127.0.0.1).
    """

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.server"],
            cwd=pathlib.Path(__file__).resolve().parent.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self._readline().split()
        if ready[:1] != ["ready"]:
            raise RuntimeError(f"benchmark server did not start: {ready}")
        self.port = int(ready[1])

    def _readline(self) -> str:
        assert self._process.stdout is not None
        return self._process.stdout.readline()

    def command(self, line: str) -> None:
        """Send one command and wait for its ``ok``."""
        assert self._process.stdin is not None
        self._process.stdin.write(line + "\n")
        self._process.stdin.flush()
        answer = self._readline().strip()
        if answer != "ok":
            raise RuntimeError(f"benchmark server: {line!r} gave {answer!r}")

    def __enter__(self) -> CuratorProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.close()
        self._process.wait(timeout=30)
        self._process.stdout.close()


if __name__ == "__main__":
    anyio.run(_serve)
