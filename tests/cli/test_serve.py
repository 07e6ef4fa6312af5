"""`trionodes serve`: a simulated Curator, plain and with mutual TLS, run as a process."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest

import trionodes
from trionodes.cli import EXIT_ERROR, EXIT_OK
from trionodes.testing import FakeCurator, make_node

from .process import run, untimed


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
            # Told when a client comes and when it goes.
            assert untimed(await serve.line()) == "a client connected (1 connection open)"
        assert [node.id for node in initial.new] == [make_node(i).id for i in (1, 2, 3)]
        assert untimed(await serve.line()) == "a client left (0 connections open)"
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


MEMBERS = re.compile(
    r"fake control plane of 3 members listening on (127\.0\.0\.1:\d+) \(leader\), "
    r"(127\.0\.0\.1:\d+), (127\.0\.0\.1:\d+)( with TLS)?: 2 nodes besides the "
    r"members, 0 changes/s; Ctrl-C to stop"
)


def printed_command(line: str, prefix: str) -> list[str]:
    """The arguments after `trionodes` of a command line that serve printed."""
    assert line.startswith(prefix), line
    words = shlex.split(line.removeprefix(prefix))
    assert words[0] == "trionodes"
    return words[1:]


async def test_serve_members_prints_the_commands_that_reach_it() -> None:
    async with run("serve", "--members", "3", "--nodes", "2", "--churn", "0") as serve:
        match = MEMBERS.fullmatch(await serve.line())
        assert match
        endpoints = list(match.groups()[:3])
        assert match[4] is None  # plain text
        watch = printed_command(await serve.line(), "follow it with: ")
        leader = printed_command(await serve.line(), "see who leads: ")
        assert watch == ["watch", *endpoints]
        assert leader == ["leader", *endpoints]
        async with run(*watch, "--json") as command:
            events = [json.loads(await command.line()) for _ in range(6)]
            status, stderr = await command.interrupt()
        assert status == EXIT_OK, stderr
        # The members' own nodes and the two others, then synced.
        assert [event["event"] for event in events] == ["new"] * 5 + ["synced"]
        node_ids = {event["node"]["id"] for event in events[:-1]}
        assert {make_node(1).id, make_node(2).id} < node_ids
        async with run(*leader) as command:
            told = await command.line()
            status, stderr = await command.wait()
        assert status == EXIT_OK, stderr
        assert re.fullmatch(rf"metropolis-[0-9a-f]{{32}} leads, at {endpoints[0]} \(.*\)", told)
        status, stderr = await serve.interrupt()
    assert status == EXIT_OK, stderr


# Known bug, not yet found: on Python 3.13, about one run in three, `watch` in
# cluster mode over TLS does not end after Ctrl-C (both threads idle, the Trio side
# waiting). The library's own TLS cluster tests pass there; see the closing note.
@pytest.mark.skipif(
    sys.version_info >= (3, 13), reason="Ctrl-C of a TLS cluster watch can hang on 3.13+"
)
async def test_serve_members_with_tls_writes_a_metroctl_directory(tmp_path: Path) -> None:
    metroctl = tmp_path / "metroctl"
    args = ["--members", "3", "--nodes", "2", "--churn", "0", "--tls", str(metroctl)]
    async with run("serve", *args) as serve:
        match = MEMBERS.fullmatch(await serve.line())
        assert match
        assert match[4] == " with TLS"
        assert await serve.line() == (
            f"metroctl configuration in {metroctl}: ca.pem, owner.pem, owner-key.pem"
        )
        assert (metroctl / "owner-key.pem").stat().st_mode & 0o777 == 0o600
        watch = printed_command(await serve.line(), "follow it with: ")
        leader = printed_command(await serve.line(), "see who leads: ")
        config = ["--metroctl-config", str(metroctl)]
        assert watch == ["watch", *match.groups()[:3], *config]
        assert leader == ["leader", *match.groups()[:3], *config]
        async with run(*watch) as command:
            lines = [untimed(await command.line()) for _ in range(6)]
            status, stderr = await command.interrupt()
        assert status == EXIT_OK, stderr
        assert lines[-1] == "synced: 5 nodes"
        async with run(*leader, "--json") as command:
            record = json.loads(await command.line())
            status, stderr = await command.wait()
        assert status == EXIT_OK, stderr
        assert record["endpoint"] == match[1]
        status, stderr = await serve.interrupt()
    assert status == EXIT_OK, stderr


async def test_a_watch_stays_quiet_while_serve_moves_the_leader() -> None:
    args = ["--members", "2", "--nodes", "2", "--churn", "0", "--move-leader", "1"]
    async with run("serve", *args) as serve:
        await serve.line()
        watch = printed_command(await serve.line(), "follow it with: ")
        await serve.line()
        async with run(*watch) as command:
            lines = [untimed(await command.line()) for _ in range(5)]
            assert lines[-1] == "synced: 4 nodes"
            move = await serve.line()
            while "a client" in move:  # the watch's connections to the members
                move = await serve.line()
            assert re.fullmatch(
                r"the leader is now member 1: metropolis-[0-9a-f]{32} at 127\.0\.0\.1:\d+", move
            )
            # The watch has found the new leader, and resynced: its log says both.
            new_leader = move.split()[6].rstrip(":")
            while f"leader is {new_leader}" not in await command.error_line():
                pass
            while "is back" not in await command.error_line():
                pass
            status, stderr = await command.interrupt()
            assert status == EXIT_OK, stderr
            # Nothing changed in the cluster: nothing printed, not even "resynced".
            assert await command.rest() == ""
        status, stderr = await serve.interrupt()
    assert status == EXIT_OK, stderr


async def test_serve_members_says_which_member_a_client_reached() -> None:
    async with run("serve", "--members", "2", "--nodes", "1", "--churn", "0") as serve:
        await serve.line()
        printed_command(await serve.line(), "follow it with: ")
        leader = printed_command(await serve.line(), "see who leads: ")  # asks member 0 first
        async with run(*leader) as command:
            status, stderr = await command.wait()
        assert status == EXIT_OK, stderr
        first = untimed(await serve.line())
        assert re.fullmatch(
            r"a client connected to member 0 \(127\.0\.0\.1:\d+\) \(1 connection open\)", first
        ), first
        status, stderr = await serve.interrupt()
    assert status == EXIT_OK, stderr


async def test_watch_without_credentials_against_serve_tls_says_which_to_give(
    tmp_path: Path,
) -> None:
    tls = tmp_path / "tls"
    async with run("serve", "--nodes", "1", "--churn", "0", "--tls", str(tls)) as serve:
        await serve.line()
        await serve.line()
        words = shlex.split((await serve.line()).removeprefix("follow it with: "))
        where = words[2]
        async with run("watch", where) as watch:  # the files left out
            status, stderr = await watch.wait()
        assert status == EXIT_ERROR
        *_, error, hint = stderr.splitlines()
        assert error.startswith("trionodes: error: ")
        assert "pass ssl=" not in error  # flags, not the library's keywords
        assert "give --metroctl-config [DIR], or --ca, --cert and --key" in error
        assert hint.startswith(
            f"trionodes: hint: {where} may serve TLS, as a real Curator does: give --ca "
            "(the cluster CA), --cert and --key (for `trionodes serve --tls DIR`, the files "
            "it wrote into DIR)"
        )
        status, stderr = await serve.interrupt()
    assert status == EXIT_OK, stderr
