"""Ctrl-C ends a program whose watch stream is open: plain Trio, AnyIO on both backends.

No ``restrict_keyboard_interrupt_to_checkpoints`` is needed: the asyncio loop grpclib
runs on lives in a worker thread, where no signal lands.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

PROGRAM = textwrap.dedent(
    """
    import sys, threading, anyio, trio, trionodes
    from trionodes.testing import open_fake_curator, make_node

    async def main():
        async with open_fake_curator() as fake:
            fake.put(make_node(1))
            async with trionodes.open_curator(fake.host, fake.port) as curator:
                async with anyio.create_task_group() as tasks:
                    await tasks.start(trionodes.watch_nodes, curator, trionodes.SimpleFollower())
                    print("synced", flush=True)
                    await anyio.sleep_forever()

    try:
        if sys.argv[1] == "plain-trio":
            trio.run(main)
        else:
            anyio.run(main, backend=sys.argv[1])
    except* KeyboardInterrupt:
        print("interrupted", threading.active_count(), flush=True)
    """
)


@pytest.mark.parametrize("runner", ["plain-trio", "trio", "asyncio"])
def test_ctrl_c_ends_a_program_with_an_open_stream(runner: str) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", PROGRAM, runner],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "synced\n"
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    # Every loop thread was stopped and joined on the way out.
    assert out == "interrupted 1\n", err
    assert process.returncode == 0, err
