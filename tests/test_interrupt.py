"""Ctrl-C ends a program whose watch stream is open, on Trio and on asyncio."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

PROGRAM = textwrap.dedent(
    """
    import sys, anyio, trionodes
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
        anyio.run(main, backend=sys.argv[1])
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    """
)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_ctrl_c_ends_a_program_with_an_open_stream(backend: str) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", PROGRAM, backend],
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
    assert out == "interrupted\n", err
    assert process.returncode == 0, err
