"""`trionodes serve`: a simulated Curator, plain and with mutual TLS, run as a process."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import trionodes
from trionodes.cli import EXIT_ERROR, EXIT_OK
from trionodes.testing import FakeCurator, make_node

from .process import run


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
