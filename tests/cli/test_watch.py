"""`trionodes watch`: its change log (text and JSON), and the command run against
the fake Curator."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
import trio
import trustme

import trionodes
from trionodes import BatchKind, Node, NodeBatch, NodeState, StatusCode
from trionodes.cli import EXIT_ERROR, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE
from trionodes.cli._cluster import demo_nodes
from trionodes.cli._format import node_record
from trionodes.cli.watch import ChangeLog
from trionodes.testing import FakeCurator, make_node

from .process import (
    closed_port,
    endpoint,
    run,
    untimed,
)

NOW = datetime.datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=datetime.UTC)
CLOCK = f"{NOW.astimezone():%H:%M:%S}"


def batch(
    kind: BatchKind,
    new: tuple[Node, ...] = (),
    updated: tuple[tuple[Node, Node], ...] = (),
    deleted: tuple[Node, ...] = (),
    nodes: int = 0,
) -> NodeBatch:
    view = {make_node(index).id: make_node(index) for index in range(nodes)}
    return NodeBatch(new, updated, deleted, view, kind)


def test_change_log_json() -> None:
    lines: list[str] = []
    log = ChangeLog(lines.append, as_json=True, now=lambda: NOW)
    log.batch(batch(BatchKind.INITIAL, new=(make_node(1), make_node(2)), nodes=2))
    moved = make_node(2, address="10.9.9.9", labels={})
    log.batch(
        batch(
            BatchKind.LIVE,
            new=(make_node(3),),
            updated=((make_node(2), moved),),
            deleted=(make_node(1),),
            nodes=2,
        )
    )
    log.batch(batch(BatchKind.RESYNC, deleted=(make_node(3),), nodes=1))
    records = [json.loads(line) for line in lines]
    assert all(record.pop("time") == "2026-03-04T05:06:07.890+00:00" for record in records)
    assert records == [
        {"event": "new", "node": node_record(make_node(1))},
        {"event": "new", "node": node_record(make_node(2))},
        {"event": "synced", "nodes": 2},
        # New and updated in node id order, then deletions.
        {"event": "updated", "node": node_record(moved), "changed": ["address", "labels"]},
        {"event": "new", "node": node_record(make_node(3))},
        {"event": "deleted", "node": node_record(make_node(1))},
        {"event": "deleted", "node": node_record(make_node(3))},
        {"event": "resynced", "nodes": 1},
    ]


def test_change_log_text() -> None:
    lines: list[str] = []
    log = ChangeLog(lines.append, as_json=False, now=lambda: NOW)
    log.batch(batch(BatchKind.INITIAL, new=(make_node(1),), nodes=1))
    log.batch(batch(BatchKind.INITIAL, nodes=0))
    log.updated(make_node(1), make_node(1, state=NodeState.STANDBY))
    log.deleted(make_node(1, state=NodeState.STANDBY))
    node_1 = make_node(1).id
    assert lines == [
        f"{CLOCK} + {node_1}  UP       10.0.0.1        worker",
        f"{CLOCK} synced: 1 node",
        f"{CLOCK} synced: 0 nodes",
        f"{CLOCK} ~ {node_1}  state UP -> STANDBY",
        f"{CLOCK} - {node_1}  (was STANDBY 10.0.0.1)",
    ]


async def test_watch_prints_each_change_until_ctrl_c(fake: FakeCurator) -> None:
    fake.put(*demo_nodes(4))
    ids = [make_node(index).id for index in range(1, 6)]
    async with run("watch", endpoint(fake)) as watch:
        assert [untimed(await watch.line()) for _ in range(5)] == [
            f"+ {ids[0]}  UP       10.0.0.1        controller,consensus",
            f"+ {ids[1]}  UP       10.0.0.2        worker,controller,consensus",
            f"+ {ids[2]}  UP       10.0.0.3        worker,controller,consensus",
            f"+ {ids[3]}  NEW      10.0.0.4        worker",
            "synced: 4 nodes",
        ]
        fake.change(put=[make_node(4), make_node(5)], delete=[ids[1]])
        assert [untimed(await watch.line()) for _ in range(3)] == [
            f"~ {ids[3]}  state NEW -> UP",
            f"+ {ids[4]}  UP       10.0.0.5        worker",
            f"- {ids[1]}  (was UP 10.0.0.2)",
        ]
        status, stderr = await watch.interrupt()
    assert status == EXIT_OK, stderr
    assert stderr == ""


async def test_watch_json(fake: FakeCurator) -> None:
    fake.put(make_node(1))
    async with run("watch", "--json", endpoint(fake)) as watch:
        first, synced = json.loads(await watch.line()), json.loads(await watch.line())
        assert first["event"] == "new"
        assert first["node"] == node_record(make_node(1))
        assert datetime.datetime.fromisoformat(first["time"]).tzinfo is not None
        assert synced["event"] == "synced"
        assert synced["nodes"] == 1
        fake.put(make_node(1, state=NodeState.DECOMMISSIONED))
        updated = json.loads(await watch.line())
        assert updated["event"] == "updated"
        assert updated["node"]["state"] == "DECOMMISSIONED"
        assert updated["changed"] == ["state"]
        fake.delete(make_node(1).id)
        deleted = json.loads(await watch.line())
        assert (deleted["event"], deleted["node"]["id"]) == ("deleted", make_node(1).id)
        status, stderr = await watch.interrupt()
    assert status == EXIT_OK, stderr


async def test_watch_one_node_ends_when_it_is_deleted(fake: FakeCurator) -> None:
    node_id = make_node(2).id
    fake.put(make_node(1))
    async with run("watch", "--json", "--node", node_id, endpoint(fake)) as watch:
        fake.put(make_node(1, state=NodeState.STANDBY), make_node(2, state=NodeState.NEW))
        assert json.loads(await watch.line())["node"] == node_record(
            make_node(2, state=NodeState.NEW)
        )
        fake.put(make_node(2))
        updated = json.loads(await watch.line())
        assert (updated["event"], updated["changed"]) == ("updated", ["state"])
        fake.delete(node_id)
        deleted = json.loads(await watch.line())
        assert (deleted["event"], deleted["node"]["state"]) == ("deleted", "UP")
        status, stderr = await watch.wait()  # no Ctrl-C: the command ends by itself
    assert status == EXIT_OK, stderr


async def test_watch_refused_by_the_curator_exits_with_an_error(fake: FakeCurator) -> None:
    fake.authorize = lambda cert: trionodes.CuratorError(
        StatusCode.PERMISSION_DENIED, "not an owner"
    )
    async with run("watch", endpoint(fake)) as watch:
        status, stderr = await watch.wait()
    assert status == EXIT_ERROR
    assert stderr == "trionodes: error: Curator answered PERMISSION_DENIED: not an owner\n"


async def test_watch_with_tls_against_plain_text_exits_with_a_hint(
    fake: FakeCurator, tmp_path: Path
) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ca.issue_cert("client@example").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "client.pem")
    )
    client = str(tmp_path / "client.pem")
    tls = ["--ca", str(tmp_path / "ca.pem"), "--cert", client, "--key", client]
    async with run("watch", endpoint(fake), *tls) as watch:
        status, stderr = await watch.wait()
    assert status == EXIT_ERROR
    error, hint = stderr.splitlines()
    assert error.startswith("trionodes: error: TLS handshake with ")
    assert error.endswith("the Curator does not seem to serve TLS there (WRONG_VERSION_NUMBER)")
    # All three were given: the advice is to drop them, not to give them.
    assert hint == (
        f"trionodes: hint: {endpoint(fake)} speaks plain text, as `trionodes serve` does "
        "without --tls: leave out --ca, --cert and --key"
    )


async def test_watch_reports_a_reconnect_on_stderr_and_goes_on(fake: FakeCurator) -> None:
    fake.put(make_node(1))
    async with run("watch", endpoint(fake)) as watch:
        assert untimed(await watch.line()).startswith("+ ")
        assert untimed(await watch.line()) == "synced: 1 node"
        fake.fail_streams(StatusCode.UNAVAILABLE, "leader lost")
        warning = await watch.error_line()
        assert "WARNING" in warning
        assert "leader lost" in warning
        # A person's words, not the names of the gRPC requests.
        assert "NodesInCluster" not in warning
        assert endpoint(fake) in warning
        fake.put(make_node(1, state=NodeState.STANDBY))  # seen after the resync
        assert untimed(await watch.line()) == f"~ {make_node(1).id}  state UP -> STANDBY"
        status, stderr = await watch.interrupt()
    assert status == EXIT_OK, stderr


async def test_watch_ends_quietly_when_its_reader_goes_away(fake: FakeCurator) -> None:
    fake.put(make_node(1))
    async with run("watch", endpoint(fake)) as watch:
        await watch.line()
        assert watch.process.stdout is not None
        await watch.process.stdout.aclose()  # like `trionodes watch | head -1`
        fake.put(make_node(1, state=NodeState.STANDBY))  # a change to print
        status, stderr = await watch.wait()
    assert status == EXIT_OK, stderr
    assert stderr == ""


async def test_watch_one_node_that_is_not_there_says_so(fake: FakeCurator) -> None:
    fake.put(make_node(1))
    missing = make_node(2).id
    async with run("watch", "--node", missing, endpoint(fake)) as watch:
        assert await watch.error_line() == (
            f"waiting for node {missing} to appear; it is not in the cluster now"
        )
        fake.put(make_node(2))  # it appears: followed from then on
        assert untimed(await watch.line()) == f"+ {missing}  UP       10.0.0.2        worker"
        fake.delete(missing)
        assert untimed(await watch.line()) == f"- {missing}  (was UP 10.0.0.2)"
        status, stderr = await watch.wait()
    assert status == EXIT_OK, stderr
    assert stderr == ""


async def test_watch_one_node_that_is_there_says_nothing_on_stderr(fake: FakeCurator) -> None:
    fake.put(make_node(1))
    async with run("watch", "--node", make_node(1).id, endpoint(fake)) as watch:
        assert untimed(await watch.line()).startswith(f"+ {make_node(1).id}  UP")
        status, stderr = await watch.interrupt()
    assert status == EXIT_OK, stderr
    assert stderr == ""


async def test_watch_refuses_a_shortened_node_id(fake: FakeCurator) -> None:
    for shortened in ("metropolis-…00000001", "metropolis-...0001"):
        async with run("watch", "--node", shortened, endpoint(fake)) as watch:
            status, stderr = await watch.wait()
        assert status == EXIT_USAGE
        assert f"Invalid value for '--node': {shortened!r} is shortened" in stderr
        assert "give the whole id" in stderr


async def test_watch_timeout_gives_up_when_nothing_answers() -> None:
    port = closed_port()
    async with run("watch", f"127.0.0.1:{port}", "--timeout", "1") as watch:
        status, stderr = await watch.wait()
        assert await watch.rest() == ""
    assert status == EXIT_TIMEOUT
    error = stderr.splitlines()[-1]
    assert error.startswith(
        f"trionodes: error: could not read the cluster from 127.0.0.1:{port} within 1 s"
    )
    assert f"connection to 127.0.0.1:{port} failed" in error  # the last failure
    assert error.endswith("or give more time: --timeout SECONDS")


async def test_watch_timeout_bounds_only_the_first_sync(fake: FakeCurator) -> None:
    fake.put(make_node(1))
    async with run("watch", endpoint(fake), "--timeout", "1") as watch:
        assert untimed(await watch.line()).startswith("+ ")
        assert untimed(await watch.line()) == "synced: 1 node"
        await trio.sleep(2)  # past the timeout: synced in time, so the watch goes on
        fake.put(make_node(1, state=NodeState.STANDBY))
        assert untimed(await watch.line()) == f"~ {make_node(1).id}  state UP -> STANDBY"
        status, stderr = await watch.interrupt()
    assert status == EXIT_OK, stderr


def pem_files(directory: Path) -> tuple[str, str, str]:
    """A CA, a client certificate it issued and the certificate's key, in three files."""
    ca = trustme.CA()
    client = ca.issue_cert("client@example")
    paths = tuple(str(directory / name) for name in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(paths[0])
    client.cert_chain_pems[0].write_to_path(paths[1])
    client.private_key_pem.write_to_path(paths[2])
    return paths[0], paths[1], paths[2]


@pytest.mark.parametrize("mode", [[], ["--cluster"]])
async def test_swapped_certificate_and_key_are_named(
    fake: FakeCurator, tmp_path: Path, mode: list[str]
) -> None:
    ca, cert, key = pem_files(tmp_path)
    swapped = ["--ca", ca, "--cert", key, "--key", cert]
    async with run("watch", endpoint(fake), *mode, *swapped) as watch:
        status, stderr = await watch.wait()
    assert status == EXIT_USAGE
    assert "PEM lib" not in stderr
    assert stderr.splitlines()[-1] == (
        f"Error: --cert and --key are swapped: {key} holds a private key and {cert} a "
        f"certificate. Give the certificate as --cert and its key as --key: --cert {cert} "
        f"--key {key}"
    )


async def test_a_key_given_as_the_certificate_is_named(fake: FakeCurator, tmp_path: Path) -> None:
    ca, _, key = pem_files(tmp_path)
    async with run("watch", endpoint(fake), "--ca", ca, "--cert", key, "--key", key) as watch:
        status, stderr = await watch.wait()
    assert status == EXIT_USAGE
    assert "PEM lib" not in stderr
    error = stderr.splitlines()[-1]
    assert error.startswith(f"Error: {key}: holds a private key, not a certificate")
    assert error.endswith("Were two files swapped?")
