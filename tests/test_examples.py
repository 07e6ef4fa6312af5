"""The programs in examples/: their output formats, and each run for real.

Each example runs as a subprocess against the fake Curator, as it would against
``trionodes serve``, while the test changes the cluster and reads the file it writes.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

import trionodes
from trionodes import Node, NodeState
from trionodes.cli import EXIT_OK, EXIT_USAGE
from trionodes.testing import FakeCurator, make_node

from .cli.process import run

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(name: str) -> ModuleType:
    """Import ``examples/NAME.py`` (not a package) as a module."""
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


hosts_file = load("hosts_file")
prometheus_sd = load("prometheus_sd")
wireguard_peers = load("wireguard_peers")


# Output formats.


def test_hosts_text() -> None:
    nodes = {node.id: node for node in (make_node(2), make_node(1, address="10.9.9.9"))}
    assert hosts_file.hosts_text(nodes) == (
        "# Nodes of the cluster, written by hosts_file.py. Do not edit.\n"
        "10.9.9.9\tmetropolis-00000000000000000000000000000001\n"
        "10.0.0.2\tmetropolis-00000000000000000000000000000002\n"
    )


def test_hosts_file_view() -> None:
    follower = hosts_file.HostsFile(Path("unused"))
    assert follower.filter(make_node(1, state=NodeState.NEW))
    assert not follower.filter(make_node(1, address=""))
    assert follower.equals(make_node(1), make_node(1, labels={}, state=NodeState.STANDBY))
    assert not follower.equals(make_node(1), make_node(1, address="10.9.9.9"))


def test_prometheus_target_group() -> None:
    node = make_node(1, controller=True, consensus=True, labels={"rack": "r1", "team.db": "a"})
    assert prometheus_sd.target_group(node, 9100) == {
        "targets": ["10.0.0.1:9100"],
        "labels": {
            "node_id": "metropolis-00000000000000000000000000000001",
            "roles": ",consensus,controller,worker,",
            "node_label_rack": "r1",
            "node_label_team_db": "a",
        },
    }
    ipv6 = prometheus_sd.target_group(make_node(2, address="fd00::2", labels={}), 9100)
    assert ipv6["targets"] == ["[fd00::2]:9100"]
    assert ipv6["labels"]["roles"] == ",worker,"
    assert prometheus_sd.target_group(make_node(3, state=NodeState.NEW), 9100) is None
    assert prometheus_sd.target_group(make_node(3, address=""), 9100) is None


def test_wireguard_peer_section() -> None:
    peer = wireguard_peers.peer(make_node(1), 51820)
    assert peer.section() == (
        "# metropolis-00000000000000000000000000000001\n"
        "[Peer]\n"
        "PublicKey = AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=\n"
        "Endpoint = 10.0.0.1:51820\n"
        "AllowedIPs = 10.192.1.0/24\n"
    )
    keyless = make_node(2)
    assert keyless.clusternet is not None
    keyless.clusternet.wireguard_pubkey = ""
    assert wireguard_peers.peer(keyless, 51820) is None
    assert wireguard_peers.peer(make_node(3, state=NodeState.STANDBY), 51820) is None


def test_wireguard_peer_list_leaves_out_its_own_node() -> None:
    follower = wireguard_peers.PeerList(Path("unused"), 51820, own_id=make_node(1).id)
    assert not follower.filter(make_node(1))
    assert follower.filter(make_node(2))
    assert follower.equals(make_node(2), make_node(2, labels={}))


@pytest.mark.parametrize("module", [hosts_file, prometheus_sd, wireguard_peers])
def test_write_atomically_replaces_the_file(module: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_text("old\n")
    before = path.stat().st_ino
    module.write_atomically(path, "new\n")
    assert path.read_text() == "new\n"
    assert path.stat().st_ino != before  # a new file took the old one's place
    assert os.listdir(tmp_path) == ["out"]  # no temporary file left behind


# Each example, run.


def hosts_summary(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ")
    return {node_id: address for address, node_id in (line.split("\t") for line in lines[1:])}


def prometheus_summary(path: Path) -> dict[str, str]:
    groups = json.loads(path.read_text())
    return {group["labels"]["node_id"]: group["targets"][0] for group in groups}


def wireguard_summary(path: Path) -> dict[str, str]:
    sections = path.read_text().split("\n\n")
    summary = {}
    for section in sections:
        lines = section.splitlines()
        assert lines[1] == "[Peer]"
        summary[lines[0].removeprefix("# ")] = lines[3].removeprefix("Endpoint = ")
    return summary


def ids_to(text: Callable[[int], str], *indices: int) -> dict[str, str]:
    return {make_node(index).id: text(index) for index in indices}


def with_new_timestamp(node: Node) -> Node:
    """``node`` with a new status timestamp: a change none of the examples writes."""
    assert node.status is not None
    later = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    return dataclasses.replace(node, status=dataclasses.replace(node.status, timestamp=later))


@pytest.mark.parametrize(
    ("script", "summary", "port", "newcomer_at_start"),
    [
        ("hosts_file", hosts_summary, None, True),  # every node with an address
        ("prometheus_sd", prometheus_summary, 9100, False),  # UP nodes only
        ("wireguard_peers", wireguard_summary, 51820, False),
    ],
)
async def test_example_follows_the_cluster(
    fake: FakeCurator,
    tmp_path: Path,
    script: str,
    summary: Callable[[Path], dict[str, str]],
    port: int | None,
    newcomer_at_start: bool,
) -> None:
    def seen(*indices: int, moved: int | None = None) -> dict[str, str]:
        def where(index: int) -> str:
            address = "10.9.9.9" if index == moved else f"10.0.0.{index}"
            return address if port is None else f"{address}:{port}"

        return ids_to(where, *indices)

    output = tmp_path / "out"
    fake.put(make_node(1), make_node(2), make_node(3, state=NodeState.NEW))
    argv = [sys.executable, str(EXAMPLES / f"{script}.py"), f"{fake.host}:{fake.port}"]
    async with run(*argv, str(output)) as example:
        assert (await example.line()).startswith(f"wrote {output}: ")
        assert summary(output) == (seen(1, 2, 3) if newcomer_at_start else seen(1, 2))
        inode = output.stat().st_ino

        # A change no example writes, then one every example writes: the next file
        # is the second one's.
        fake.put(with_new_timestamp(make_node(1)))
        fake.put(make_node(2, address="10.9.9.9"), make_node(3))
        assert (await example.line()).startswith(f"wrote {output}: ")
        assert summary(output) == seen(1, 2, 3, moved=2)
        assert output.stat().st_ino != inode  # replaced, not rewritten in place

        fake.delete(make_node(1).id)
        assert (await example.line()).startswith(f"wrote {output}: ")
        assert summary(output) == seen(2, 3, moved=2)
        assert os.listdir(tmp_path) == ["out"]

        status, stderr = await example.interrupt()
    assert status == EXIT_OK, stderr
    assert stderr == ""


@pytest.mark.parametrize("script", ["hosts_file", "prometheus_sd", "wireguard_peers"])
@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("127.0.0.1:x", "'127.0.0.1:x' has no valid port (1 to 65535) after the colon"),
        ("::1", "'::1' looks like an IPv6 address: put it in brackets, as [::1] or [::1]:7835"),
        ("http://127.0.0.1:42689", "'http://127.0.0.1:42689' has a URL scheme: drop it"),
    ],
)
async def test_example_with_a_bad_address_says_so_in_one_line(
    tmp_path: Path, script: str, address: str, message: str
) -> None:
    argv = [sys.executable, str(EXAMPLES / f"{script}.py"), address, str(tmp_path / "out")]
    async with run(*argv) as example:
        status, stderr = await example.wait()
        assert await example.rest() == ""
    assert status == EXIT_USAGE
    [line] = stderr.splitlines()  # no traceback
    assert line.startswith(f"{script}.py: error: bad ENDPOINT: {message}")


async def test_example_takes_an_address_without_a_port_and_bad_files_in_one_line(
    tmp_path: Path,
) -> None:
    # Parsed, then refused for its certificate file: no traceback either.
    argv = [sys.executable, str(EXAMPLES / "hosts_file.py"), "[::1]", str(tmp_path / "out")]
    missing = ["--ca", str(tmp_path / "missing.pem"), "--cert", "c", "--key", "k"]
    async with run(*argv, *missing) as example:
        status, stderr = await example.wait()
    assert status == EXIT_USAGE
    [line] = stderr.splitlines()
    assert line.startswith("hosts_file.py: error: cannot use --ca, --cert and --key: ")


async def test_example_ends_in_one_line_when_the_curator_refuses(
    fake: FakeCurator, tmp_path: Path
) -> None:
    fake.authorize = lambda cert: trionodes.CuratorError(
        trionodes.StatusCode.PERMISSION_DENIED, "not an owner"
    )
    argv = [sys.executable, str(EXAMPLES / "hosts_file.py"), f"{fake.host}:{fake.port}"]
    async with run(*argv, str(tmp_path / "out")) as example:
        status, stderr = await example.wait()
    assert status == 1
    # After the library's own log line (no logging is set up: Python prints warnings
    # and errors), one line of its own, and no traceback.
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == (
        "hosts_file.py: error: Curator answered PERMISSION_DENIED: not an owner"
    )
