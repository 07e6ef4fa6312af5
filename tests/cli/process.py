"""Running `trionodes` as a subprocess, its output read line by line as it prints.

Commands that talk to a Curator run against the fake Curator served from the test's
own event loop.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.lowlevel

from trionodes.testing import FakeCluster, FakeCurator

CLI = [sys.executable, "-m", "trionodes.cli"]
# Generous: a loaded CI machine takes a while to start Python and import grpclib.
STARTUP_TIMEOUT = 30.0
# How long the process may take to end after Ctrl-C.
EXIT_TIMEOUT = 5.0


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

    async def rest(self) -> str:
        """Once the process has ended: what it printed on stdout that was not read."""
        assert self.process.returncode is not None
        assert self.process.stdout is not None
        with trio.fail_after(STARTUP_TIMEOUT):
            while chunk := await self.process.stdout.receive_some():
                self._stdout += chunk
        rest, self._stdout = self._stdout, b""
        return rest.decode()

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


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (just released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def endpoint(fake: FakeCurator) -> str:
    return f"{fake.host}:{fake.port}"


def followers_first(cluster: FakeCluster) -> list[str]:
    """The members' endpoints, the leader's last: the lookup must go past followers."""
    members = sorted(cluster.members, key=lambda member: member.is_leader)
    return [member.endpoint for member in members]


TIME = re.compile(r"^\d\d:\d\d:\d\d ")


def untimed(line: str) -> str:
    assert TIME.match(line), line
    return TIME.sub("", line)
