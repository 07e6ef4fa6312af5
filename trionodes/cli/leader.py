"""``trionodes leader``: ask a cluster's control-plane nodes who leads it, and print it.

Asks the endpoints in turn through ``CuratorLocal.GetCurrentLeader``
(:func:`trionodes.find_leader`) and prints the leader's node id, where it serves the
Curator and which node said so: one line for people, or a JSON object for scripts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial

import click
import trio

import trionodes
from trionodes import ConnectionLost, Endpoint, Leader, TLSError, TrionodesError

from . import EXIT_TIMEOUT
from ._connect import CLUSTER_TLS_HINT, CredentialFiles, speaks_plain_text
from ._options import exit_status_help, leader_options
from ._run import CommandError, TimedOut, log_to_stderr, run_command


def leader_record(leader: Leader) -> dict[str, object]:
    """The leader as the JSON object ``trionodes leader --json`` prints."""
    return {
        "node_id": leader.node_id,
        "endpoint": str(leader.endpoint),
        "host": leader.endpoint.host,
        "port": leader.endpoint.port,
        "told_by": leader.told_by,
    }


def leader_line(leader: Leader) -> str:
    """The leader in one line for people: its id, its endpoint, who said so."""
    return f"{leader.node_id} leads, at {leader.endpoint} (told by {leader.told_by})"


async def run_leader(
    endpoints: Sequence[Endpoint],
    credentials: CredentialFiles,
    give_up_after: float,
    as_json: bool,
    write: Callable[[str], object],
) -> None:
    """Find who leads and write it.

    Raises:
        CredentialsError: The credentials cannot be used.
        TLSError: No node could be verified as a node of the cluster.
        CommandError: No node said who leads: each refused, or was unreachable.
        TimedOut: No node said who leads within ``give_up_after`` seconds.
    """
    loaded = credentials.load()
    asked = " ".join(map(str, endpoints))
    with trio.move_on_after(give_up_after):
        try:
            leader = await trionodes.find_leader(map(str, endpoints), credentials=loaded)
        except ConnectionLost as exc:
            advice = (
                "The nodes seem to speak TLS: give --metroctl-config [DIR] or --ca FILE"
                if exc.maybe_tls and not credentials.given
                else "Check that the endpoints are the cluster's control-plane nodes and "
                "that they are reachable"
            )
            raise CommandError(f"{exc}. {advice}") from None
        write(json.dumps(leader_record(leader)) if as_json else leader_line(leader))
        return
    raise TimedOut(
        f"no control-plane node said who leads within {give_up_after:g} s (asked {asked}). "
        "Check that the endpoints are reachable, or give more time: --timeout SECONDS"
    )


def _hint(credentials: CredentialFiles, exc: BaseException) -> str | None:
    if not isinstance(exc, TLSError):
        return None
    if speaks_plain_text(exc):
        given = "--metroctl-config" if credentials.metroctl else "--ca (and --cert, --key)"
        return (
            "the nodes speak plain text, as `trionodes serve --members N` does without "
            f"--tls: leave out {given}"
        )
    return CLUSTER_TLS_HINT


@click.command(
    epilog=exit_status_help(
        "printed the leader",
        "no node said who leads, no node could be verified as the cluster's, or the "
        "credentials cannot be used (the reason is printed on stderr)",
        "bad command line, a file it names does not exist, or --cert and --key are swapped",
        "--timeout ran out before a node said who leads",
    )
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print a JSON object: "node_id", "endpoint", "host", "port", "told_by".',
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help=f"Give up, with exit status {EXIT_TIMEOUT}, if no node has said who leads within SECONDS.",
)
@leader_options
def leader(
    endpoints: tuple[Endpoint, ...], credentials: CredentialFiles, as_json: bool, timeout: float
) -> None:
    """Print which node leads the cluster.

    Asks the control-plane nodes at ENDPOINT... in turn (`host` or `host:port`, port
    7835 by default, an IPv6 address in brackets) until one says who leads; prints
    the leader's node id, the endpoint where it serves the Curator, and which node
    said so. Only the leader serves the Curator's Watch: this is the node that
    `trionodes watch` with several endpoints (or --metroctl-config) follows.
    """
    log_to_stderr()
    run = partial(run_leader, endpoints, credentials, timeout, as_json, click.echo)
    status = run_command(
        run, error=(TrionodesError, CommandError), hint=partial(_hint, credentials)
    )
    click.get_current_context().exit(status)
