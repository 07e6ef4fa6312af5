"""``trionodes serve``: a simulated Curator that keeps changing, until Ctrl-C.

Serves the fake Curator of :mod:`trionodes.testing` on a real port, plain text or
(with ``--tls DIR``) mutual TLS with throwaway certificates, and prints the
``trionodes watch`` command that follows it. With ``--members N`` it serves a fake
control plane instead (:func:`trionodes.testing.open_fake_cluster`): N members, one
of them leading, with TLS shaped like Metropolis's and a metroctl directory, and
prints the ``trionodes watch`` and ``trionodes leader`` commands that reach it.
"""

from __future__ import annotations

import contextlib
import datetime
import shlex
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Protocol

import click
import trio

from trionodes.testing import (
    FakeCluster,
    open_fake_cluster,
    open_fake_curator,
    run_churn,
    server_ssl_context,
)

from ._certs import ServeFiles, make_certificates
from ._cluster import demo_nodes
from ._format import count_text
from ._options import endpoint_text, exit_status_help, simulation_options
from ._run import CommandError, run_command

# Seconds between two looks at a server's connection counters.
_CLIENTS_POLL = 0.2


class _Counted(Protocol):
    """A server that counts its connections (the fake Curator, a fake member's server)."""

    @property
    def connections_accepted(self) -> int: ...

    @property
    def open_connections(self) -> int: ...


async def report_clients(
    servers: Sequence[tuple[str, _Counted]],
    write: Callable[[str], object],
    *,
    poll: float = _CLIENTS_POLL,
) -> None:
    """Write a line whenever a client connects to one of ``servers`` or leaves, forever.

    The servers' counters are read every ``poll`` seconds: a client that comes and
    goes between two looks is still reported, as a connection and a departure.

    Args:
        servers: Each server with how lines name it (empty for a lone server).
        write: Called with each line.
        poll: Seconds between two looks.
    """
    seen = [(server.connections_accepted, server.open_connections) for _, server in servers]
    while True:
        await trio.sleep(poll)
        for index, (name, server) in enumerate(servers):
            accepted, open_now = server.connections_accepted, server.open_connections
            before_accepted, before_open = seen[index]
            seen[index] = (accepted, open_now)
            joined = accepted - before_accepted
            left = before_open + joined - open_now
            where = f" {name}" if name else ""
            # Counted as if the arrivals came first: right when both fell between looks.
            running = before_open
            for _ in range(joined):
                running += 1
                write(f"{_clock()} a client connected{where} ({_open_text(running)})")
            for _ in range(left):
                running -= 1
                write(f"{_clock()} a client left{where} ({_open_text(running)})")


def _clock() -> str:
    return f"{datetime.datetime.now():%H:%M:%S}"


def _open_text(count: int) -> str:
    return f"{count} connection{'' if count == 1 else 's'} open"


def watch_command(host: str, port: int, files: ServeFiles | None) -> str:
    """The ``trionodes watch`` command line that follows a ``trionodes serve``."""
    words = ["trionodes", "watch", endpoint_text(host, port)]
    if files is not None:
        words += ["--ca", str(files.ca), "--cert", str(files.client_cert)]
        words += ["--key", str(files.client_key)]
    return shlex.join(words)


def cluster_command(command: str, endpoints: list[str], metroctl_dir: Path | None) -> str:
    """The ``trionodes watch`` (or ``leader``) command line that reaches a fake cluster.

    Names every member; ``--metroctl-config DIR`` with TLS. With one member and no
    TLS, ``watch`` needs ``--cluster`` to follow it as a cluster.
    """
    words = ["trionodes", command, *endpoints]
    if metroctl_dir is not None:
        words += ["--metroctl-config", str(metroctl_dir)]
    elif command != "leader" and len(endpoints) == 1:
        words.append("--cluster")
    return shlex.join(words)


async def run_serve_cluster(
    members: int,
    nodes: int,
    churn: float,
    seed: int | None,
    tls_dir: Path | None,
    move_leader: float | None,
    write: Callable[[str], object],
) -> None:
    """Serve a fake control plane until cancelled, after writing how to reach it.

    Args:
        members: How many control-plane members.
        nodes: How many other nodes, at the start and on average.
        churn: Changes per second to those nodes; 0 for none.
        seed: Seeds the changes; None for different changes each run.
        tls_dir: Serve TLS and write metroctl's files for the owner there; None
            for plain text.
        move_leader: Seconds between two leader moves; None for none.
        write: Called with each line to print.

    Raises:
        CommandError: The members could not listen, or the metroctl files could not
            be written.
    """
    async with contextlib.AsyncExitStack() as stack:
        try:
            cluster = await stack.enter_async_context(
                open_fake_cluster(members, tls=tls_dir is not None)
            )
        except OSError as exc:
            raise CommandError(
                f"cannot start the fake control plane: {exc.strerror or exc}"
            ) from exc
        metroctl_dir = None
        if tls_dir is not None:
            assert cluster.pki is not None  # made with tls=True
            try:
                metroctl_dir = cluster.pki.write_metroctl_dir(tls_dir).resolve()
            except OSError as exc:
                raise CommandError(f"cannot write metroctl's files into {tls_dir}: {exc}") from exc
        cluster.put(*demo_nodes(nodes, control_plane=0))
        where = ", ".join(
            f"{member.endpoint} (leader)" if member.is_leader else member.endpoint
            for member in cluster.members
        )
        tls = " with TLS" if metroctl_dir is not None else ""
        write(
            f"fake control plane of {members} member{'' if members == 1 else 's'} listening "
            f"on {where}{tls}: {count_text(nodes)} besides the members, {churn:g} changes/s; "
            "Ctrl-C to stop"
        )
        if metroctl_dir is not None:
            write(f"metroctl configuration in {metroctl_dir}: ca.pem, owner.pem, owner-key.pem")
        endpoints = cluster.endpoints
        write(f"follow it with: {cluster_command('watch', endpoints, metroctl_dir)}")
        write(f"see who leads: {cluster_command('leader', endpoints, metroctl_dir)}")
        async with trio.open_nursery() as nursery:
            members_named = [
                (f"to member {member.index} ({member.endpoint})", member.server)
                for member in cluster.members
            ]
            nursery.start_soon(report_clients, members_named, write)
            if churn > 0:
                nursery.start_soon(
                    partial(
                        run_churn,
                        cluster,
                        changes_per_second=churn,
                        target_nodes=nodes,
                        seed=seed,
                    )
                )
            if move_leader is not None:
                nursery.start_soon(move_leader_forever, cluster, move_leader, write)
            await trio.sleep_forever()


async def move_leader_forever(
    cluster: FakeCluster, interval: float, write: Callable[[str], object]
) -> None:
    """Move the leadership to the next member every ``interval`` seconds, saying so."""
    while True:
        await trio.sleep(interval)
        await cluster.move_leader()
        leader = cluster.leader
        write(f"the leader is now member {leader.index}: {leader.node_id} at {leader.endpoint}")


async def run_serve(
    host: str,
    port: int,
    nodes: int,
    churn: float,
    seed: int | None,
    tls_dir: Path | None,
    write: Callable[[str], object],
) -> None:
    """Serve a simulated cluster until cancelled, after writing where it listens.

    Raises:
        CommandError: The certificates could not be made or written, or the server
            could not listen on ``host:port``.
    """
    files = None
    if tls_dir is not None:
        try:
            files = make_certificates(tls_dir, host)
        except ImportError:
            raise CommandError(
                "--tls needs trustme to make certificates: pip install 'trionodes[serve-tls]'"
            ) from None
        except OSError as exc:
            raise CommandError(f"cannot write the certificates into {tls_dir}: {exc}") from exc
    context = (
        None
        if files is None
        else server_ssl_context(files.server_cert, files.server_key, client_ca=files.ca)
    )
    async with contextlib.AsyncExitStack() as stack:
        try:
            fake = await stack.enter_async_context(
                open_fake_curator(host=host, port=port, ssl=context)
            )
        except OSError as exc:
            where = endpoint_text(host, port)
            raise CommandError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
        fake.put(*demo_nodes(nodes))
        tls = " with mutual TLS" if files else ""
        write(
            f"fake Curator listening on {endpoint_text(fake.host, fake.port)}{tls}: "
            f"{count_text(nodes)}, {churn:g} changes/s; Ctrl-C to stop"
        )
        if files is not None:
            write(f"certificates in {files.ca.parent}: ca.pem (the CA), client.pem, client-key.pem")
        write(f"follow it with: {watch_command(fake.host, fake.port, files)}")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report_clients, [("", fake)], write)
            if churn > 0:
                await run_churn(fake, changes_per_second=churn, target_nodes=nodes, seed=seed)
            else:
                await trio.sleep_forever()


@click.command(
    epilog=exit_status_help(
        "ended by Ctrl-C",
        "could not listen, or write the certificates (the reason is printed on stderr)",
        "bad command line",
    )
)
@click.option(
    "--members",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Serve a fake Metropolis control plane of N members instead of one Curator: "
    "each listens on its own free port of 127.0.0.1, one leads and serves the "
    "Curator, the others answer who leads. Prints the `trionodes watch` and "
    "`trionodes leader` commands that reach it.",
)
@click.option(
    "--move-leader",
    type=click.FloatRange(min=0.1),
    default=None,
    metavar="SECONDS",
    help="With --members: move the leadership to the next member every SECONDS, as "
    "an election does (connections to the old leader drop). Default: never.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    metavar="ADDRESS",
    help="Address to listen on. Keep it on loopback: the simulated Curator is for trying "
    "things out.",
)
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=0,
    show_default=True,
    metavar="PORT",
    help="Port to listen on; 0 picks a free one (printed at the start).",
)
@simulation_options(churn=1.0)
@click.option(
    "--tls",
    "tls_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Serve mutual TLS, like a real Curator, with a throwaway CA made for this run. "
    "Writes ca.pem, server.pem, server-key.pem, client.pem and client-key.pem into DIR "
    "(created if missing; files of an earlier run are replaced) and prints the "
    "`trionodes watch` command that uses them. Needs trustme: "
    "pip install 'trionodes[serve-tls]'. With --members: TLS shaped like "
    "Metropolis's, and DIR becomes a metroctl configuration directory (ca.pem, "
    "owner.pem, owner-key.pem) for --metroctl-config; trustme is not needed.",
)
def serve(
    members: int | None,
    move_leader: float | None,
    host: str,
    port: int,
    nodes: int,
    churn: float,
    seed: int | None,
    tls_dir: Path | None,
) -> None:
    """Run a simulated Curator, or a whole control plane, until Ctrl-C.

    Serves the Curator's Watch call from an in-memory cluster that keeps changing,
    the way a real Curator serves it. Prints where it listens and the `trionodes
    watch` command that follows it; point your own program at it just the same.
    Prints a line when a client connects or leaves.

    With --members N, serves a control plane of N members sharing that cluster, as
    a real Metropolis cluster does: only the leader serves Watch, every member says
    who leads, and with --move-leader the leadership moves.
    """
    if members is None:
        if move_leader is not None:
            raise click.UsageError("--move-leader needs --members: a lone Curator has no leader")
        run = partial(run_serve, host, port, nodes, churn, seed, tls_dir, click.echo)
    else:
        if host != "127.0.0.1" or port != 0:
            raise click.UsageError(
                "--host and --port are for a lone Curator: the members of --members "
                "listen on free ports of 127.0.0.1"
            )
        run = partial(
            run_serve_cluster, members, nodes, churn, seed, tls_dir, move_leader, click.echo
        )
    click.get_current_context().exit(run_command(run, error=CommandError))
