"""`watch`, `top` and `leader` against the fake control plane: several endpoints, the
leader found past followers and followed when it moves, metroctl's credentials."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from trionodes import NodeState
from trionodes.cli import EXIT_ERROR, EXIT_OK, EXIT_TIMEOUT
from trionodes.cli._cluster import demo_nodes
from trionodes.cli._connect import LEADER_ID_TAIL
from trionodes.cli._format import short_id
from trionodes.testing import FakeCluster, make_node, open_fake_cluster

from .process import closed_port, followers_first, run
from .test_top import Terminal


@pytest.fixture
async def cluster() -> AsyncIterator[FakeCluster]:
    """Three members in plain text, member 0 leading, and three more nodes."""
    async with open_fake_cluster(3, tls=False) as cluster:
        cluster.put(*demo_nodes(3, control_plane=0))
        yield cluster


@pytest.fixture
async def tls_cluster() -> AsyncIterator[FakeCluster]:
    """Three members with Metropolis-shaped TLS and a metroctl directory."""
    async with open_fake_cluster(3, tls=True) as cluster:
        cluster.put(make_node(1))
        yield cluster


def leader_heading(cluster: FakeCluster, *, whole_id: bool = False) -> str:
    """What top's first line says of the leader: on a screen, or printed once."""
    leader = cluster.leader
    node_id = leader.node_id if whole_id else short_id(leader.node_id, LEADER_ID_TAIL)
    return f"leader {node_id} at {leader.endpoint}"


async def test_watch_follows_the_leader_past_followers_and_through_a_move(
    cluster: FakeCluster,
) -> None:
    async with run("watch", "--json", *followers_first(cluster)) as watch:
        records = [json.loads(await watch.line()) for _ in range(len(cluster.nodes) + 1)]
        assert [record["event"] for record in records] == ["new"] * 6 + ["synced"]
        assert sorted(record["node"]["id"] for record in records[:-1]) == sorted(cluster.nodes)
        await cluster.move_leader()
        new_leader = cluster.leader.node_id
        cluster.put(make_node(2, state=NodeState.STANDBY))
        # Before the watch is back (in its resync) or after (live): the change alone.
        updated = json.loads(await watch.line())
        assert (updated["event"], updated["node"]["id"]) == ("updated", make_node(2).id)
        assert updated["changed"] == ["state"]
        cluster.delete(make_node(1).id)
        events = [json.loads(await watch.line())]
        while events[-1]["event"] == "resynced":
            events.append(json.loads(await watch.line()))
        assert events[-1]["event"] == "deleted"
        assert events[-1]["node"]["id"] == make_node(1).id
        status, stderr = await watch.interrupt()
    assert status == EXIT_OK, stderr
    assert new_leader in stderr  # the log says whom it follows now
    assert "Traceback" not in stderr


async def test_watch_with_metroctl_credentials(tls_cluster: FakeCluster) -> None:
    metroctl = str(tls_cluster.metroctl_dir)
    endpoints = followers_first(tls_cluster)
    async with run("watch", *endpoints, "--metroctl-config", metroctl) as watch:
        lines = [await watch.line() for _ in range(len(tls_cluster.nodes) + 1)]
        status, stderr = await watch.interrupt()
    assert status == EXIT_OK, stderr
    assert lines[-1].endswith(f"synced: {len(tls_cluster.nodes)} nodes")


async def test_metroctl_config_defaults_to_metroctls_own_directory(
    tls_cluster: FakeCluster, tmp_path: Path
) -> None:
    assert tls_cluster.metroctl_dir is not None
    shutil.copytree(tls_cluster.metroctl_dir, tmp_path / "metroctl")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}
    async with run("leader", *followers_first(tls_cluster), "--metroctl-config", env=env) as cmd:
        line = await cmd.line()
        status, stderr = await cmd.wait()
    assert status == EXIT_OK, stderr
    assert line.startswith(f"{tls_cluster.leader.node_id} leads, ")


async def test_top_once_shows_the_leader(cluster: FakeCluster) -> None:
    endpoints = followers_first(cluster)
    async with run("top", "--once", *endpoints) as top:
        heading = (await top.line()).strip()
        status, stderr = await top.wait()
    assert status == EXIT_OK, stderr
    # Printed once, to be read or copied: the leader's whole id.
    assert heading == (
        f"trionodes top · cluster · 6 nodes, 5 up · {leader_heading(cluster, whole_id=True)} · live"
    )
    await cluster.move_leader()
    async with run("top", "--once", *endpoints) as top:
        heading = (await top.line()).strip()
        status, stderr = await top.wait()
    assert status == EXIT_OK, stderr
    assert leader_heading(cluster, whole_id=True) in heading


async def test_top_shows_the_new_leader_when_it_moves(cluster: FakeCluster) -> None:
    terminal = Terminal()
    env = {**os.environ, "TERM": "xterm-256color"}
    command = ["top", "--interval", "0.2", *followers_first(cluster)]
    try:
        async with run(*command, stdout=terminal.fd, stdin=terminal.fd, env=env) as top:
            await terminal.read_until(leader_heading(cluster))
            await cluster.move_leader()
            await terminal.read_until(leader_heading(cluster))
            status, stderr = await top.interrupt()
    finally:
        await terminal.close()
    assert status == EXIT_OK, stderr


async def test_leader(cluster: FakeCluster) -> None:
    endpoints = followers_first(cluster)
    first_asked = next(member for member in cluster.members if member.endpoint == endpoints[0])
    leader = cluster.leader
    async with run("leader", *endpoints) as command:
        line = await command.line()
        status, stderr = await command.wait()
    assert status == EXIT_OK, stderr
    assert line == f"{leader.node_id} leads, at {leader.endpoint} (told by {first_asked.node_id})"
    async with run("leader", "--json", *endpoints) as command:
        record = json.loads(await command.line())
        status, stderr = await command.wait()
    assert status == EXIT_OK, stderr
    assert record == {
        "node_id": leader.node_id,
        "endpoint": leader.endpoint,
        "host": leader.host,
        "port": leader.port,
        "told_by": first_asked.node_id,
    }


async def test_leader_over_tls_with_the_ca_alone(tls_cluster: FakeCluster) -> None:
    assert tls_cluster.metroctl_dir is not None
    ca = str(tls_cluster.metroctl_dir / "ca.pem")
    async with run("leader", "--json", *followers_first(tls_cluster), "--ca", ca) as command:
        record = json.loads(await command.line())
        status, stderr = await command.wait()
    assert status == EXIT_OK, stderr
    assert record["node_id"] == tls_cluster.leader.node_id


async def test_leader_when_no_node_answers() -> None:
    ports = [closed_port(), closed_port()]
    async with run("leader", *(f"127.0.0.1:{port}" for port in ports)) as command:
        status, stderr = await command.wait()
        assert await command.rest() == ""
    assert status == EXIT_ERROR
    [line] = stderr.splitlines()
    assert line.startswith("trionodes: error: no control-plane node said who leads the cluster")
    assert all(f"127.0.0.1:{port}" in line for port in ports)
    assert line.endswith("Check that the endpoints are the cluster's control-plane nodes and "
                         "that they are reachable")  # fmt: skip


@pytest.mark.parametrize("command", ["watch", "top", "leader"])
async def test_a_missing_metroctl_directory_is_named(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    async with run(command, "127.0.0.1", f"--metroctl-config={missing}") as process:
        status, stderr = await process.wait()
    assert status == EXIT_ERROR
    assert stderr == (
        f"trionodes: error: {missing}: no metroctl configuration directory there. Take "
        "ownership of the cluster with metroctl first (it writes ca.pem, owner.pem and "
        "owner-key.pem there), or give the directory it uses: --metroctl-config DIR\n"
    )
    # Its default, by the XDG rule.
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}
    async with run(command, "127.0.0.1", "--metroctl-config", env=env) as process:
        status, stderr = await process.wait()
    assert status == EXIT_ERROR
    assert stderr.startswith(f"trionodes: error: {tmp_path / 'metroctl'}: no metroctl ")


async def test_a_bad_file_in_the_metroctl_directory_is_named(
    tls_cluster: FakeCluster, tmp_path: Path
) -> None:
    assert tls_cluster.metroctl_dir is not None
    metroctl = shutil.copytree(tls_cluster.metroctl_dir, tmp_path / "metroctl")
    (metroctl / "owner-key.pem").unlink()
    async with run("watch", *tls_cluster.endpoints, f"--metroctl-config={metroctl}") as watch:
        status, stderr = await watch.wait()
    assert status == EXIT_ERROR
    [line] = stderr.splitlines()
    assert line.startswith(f"trionodes: error: {metroctl / 'owner-key.pem'}: ")


async def test_credentials_errors_name_flags_not_keywords(
    tls_cluster: FakeCluster,
) -> None:
    assert tls_cluster.metroctl_dir is not None
    owner = str(tls_cluster.metroctl_dir / "owner.pem")
    key = str(tls_cluster.metroctl_dir / "owner-key.pem")
    # The owner's certificate where the CA should be.
    pem = ["--ca", owner, "--cert", owner, "--key", key]
    async with run("watch", "--cluster", tls_cluster.leader.endpoint, *pem) as watch:
        status, stderr = await watch.wait()
    assert status == EXIT_ERROR
    [line] = stderr.splitlines()
    assert line.startswith(f"trionodes: error: {owner}: ")
    assert "; --ca must be the cluster CA (metroctl's ca.pem)" in line


async def test_no_credentials_for_a_tls_cluster_says_which_to_give(
    tls_cluster: FakeCluster,
) -> None:
    async with run("watch", *tls_cluster.endpoints) as watch:
        status, stderr = await watch.wait()
    assert status == EXIT_ERROR
    *_, error, hint = stderr.splitlines()
    assert error.startswith("trionodes: error: ")
    assert "if it serves TLS, give --metroctl-config [DIR], or --ca, --cert and --key" in error
    assert "client_ssl_context" not in stderr  # the library's words, not the terminal's
    assert hint == (
        "trionodes: hint: the nodes may serve TLS, as a Metropolis cluster does: give "
        "--metroctl-config [DIR], or --ca, --cert and --key"
    )


async def test_a_follower_watched_as_a_single_server_says_to_add_cluster(
    cluster: FakeCluster,
) -> None:
    follower = next(member for member in cluster.members if not member.is_leader)
    async with run("watch", follower.endpoint) as watch:
        status, stderr = await watch.wait()
    assert status == EXIT_ERROR
    error, hint = stderr.splitlines()
    assert error.startswith("trionodes: error: Curator answered UNIMPLEMENTED: unknown service")
    assert hint.startswith(f"trionodes: hint: {follower.endpoint} does not serve the Curator's")
    assert "Add --cluster" in hint


async def test_credentials_for_a_plain_text_cluster_are_to_be_left_out(
    cluster: FakeCluster, tls_cluster: FakeCluster
) -> None:
    metroctl = str(tls_cluster.metroctl_dir)
    async with run("watch", *cluster.endpoints, "--metroctl-config", metroctl) as watch:
        status, stderr = await watch.wait()
    assert status == EXIT_ERROR
    *_, error, hint = stderr.splitlines()
    assert "does not seem to serve TLS" in error
    assert hint == (
        "trionodes: hint: the nodes speak plain text, as `trionodes serve --members N` does "
        "without --tls: leave out --metroctl-config"
    )


async def test_leader_gives_up_at_its_timeout_with_the_timeout_status() -> None:
    # A port that takes connections (the kernel's backlog) and never says a word.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        where = f"127.0.0.1:{silent.getsockname()[1]}"
        async with run("leader", where, "--timeout", "1") as command:
            status, stderr = await command.wait()
    assert status == EXIT_TIMEOUT
    assert stderr.splitlines()[-1] == (
        f"trionodes: error: no control-plane node said who leads within 1 s (asked {where}). "
        "Check that the endpoints are reachable, or give more time: --timeout SECONDS"
    )
