"""``trionodes demo``: the one-command tour.

Starts a fake Curator with a simulated cluster that keeps changing, follows it as a
real one, and prints the initial cluster and then each batch of changes
(:class:`ChangePrinter`), until Ctrl-C or ``--duration``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from functools import partial

import click
import trio

import trionodes
from trionodes import Node, TrionodesError
from trionodes.testing import open_fake_curator, run_churn

from ._cluster import demo_nodes
from ._format import format_deleted, format_header, format_new, format_updated, full_id
from ._options import exit_status_help, simulation_options
from ._run import CommandError, log_to_stderr, run_command

# What the demo's output means, printed once before it: the words a reader meets.
LEGEND = (
    "Each block below is one batch: the changes the client received together and "
    "applied at once, numbered `batch N` after the initial cluster.",
    "+ a node joined (or was there at the start), ~ a node changed (and what changed), "
    "- a node left",
)
# What to try once the demo is over.
NEXT_STEP = (
    "next: run `trionodes serve` in one terminal, then the `trionodes watch` command it "
    "prints (or `trionodes top` with the same address) in another"
)


class ChangePrinter(trionodes.Follower):
    """A :class:`~trionodes.Follower` that writes each batch as a block of lines.

    The lines of a batch are collected as its changes arrive and written out together
    when it is done, under a header (see ``format_header``).

    Attributes:
        batches: How many batches have been written.
        nodes: How many nodes are in the view.
    """

    def __init__(self, write: Callable[[str], object]) -> None:
        """Make a printer.

        Args:
            write: Called with each batch's text (lines joined by newlines).
        """
        self._write = write
        self._lines: list[str] = []
        self.batches = 0
        self.nodes = 0

    def new(self, node: Node) -> None:
        """Collect a line for a new node."""
        self.nodes += 1
        self._lines.append(f"  {format_new(node, full_id)}")

    def updated(self, prev: Node, node: Node) -> None:
        """Collect a line for a changed node."""
        self._lines.append(f"  {format_updated(prev, node, full_id)}")

    def deleted(self, prev: Node) -> None:
        """Collect a line for a node that left."""
        self.nodes -= 1
        self._lines.append(f"  {format_deleted(prev, full_id)}")

    def batch_done(self) -> None:
        """Write the batch's lines under their header."""
        self.batches += 1
        self._write("\n".join([format_header(self.batches, self.nodes), *self._lines]))
        self._lines = []


async def run_demo(
    nodes: int, churn: float, seed: int | None, write: Callable[[str], object]
) -> None:
    """Serve a changing fake cluster and print its changes, until cancelled.

    Args:
        nodes: The cluster's size, at the start and on average.
        churn: Changes per second; 0 for none.
        seed: Seeds the changes; None for different changes each run.
        write: Called with each block of output.

    Raises:
        CommandError: The fake Curator could not listen.
        trionodes.TrionodesError: Following it failed for good.
    """
    async with contextlib.AsyncExitStack() as stack:
        try:
            fake = await stack.enter_async_context(open_fake_curator())
        except OSError as exc:
            raise CommandError(f"cannot start the fake Curator: {exc.strerror or exc}") from exc
        fake.put(*demo_nodes(nodes))
        write(f"fake Curator on {fake.host}:{fake.port}, {churn:g} changes/s; Ctrl-C to stop")
        for line in LEGEND:
            write(line)
        async with (
            trionodes.open_curator(fake.host, fake.port) as curator,
            trio.open_nursery() as nursery,
        ):
            # Changes start once the initial cluster is shown, so it is the one made here.
            await nursery.start(trionodes.watch_nodes, curator, ChangePrinter(write))
            if churn > 0:
                churning = partial(
                    run_churn, fake, changes_per_second=churn, target_nodes=nodes, seed=seed
                )
                nursery.start_soon(churning)


@click.command(
    epilog=exit_status_help(
        "ended by Ctrl-C or --duration",
        "the fake Curator could not start, or following it failed (the reason is "
        "printed on stderr)",
        "bad command line",
    )
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Stop after this many seconds. Default: run until Ctrl-C.",
)
@simulation_options(churn=2.0)
def demo(duration: float | None, nodes: int, churn: float, seed: int | None) -> None:
    """Follow a simulated cluster that keeps changing.

    Starts a fake Curator on 127.0.0.1 serving a simulated cluster that keeps
    changing, connects to it as to a real one, and prints the initial cluster and
    then each batch of changes (`+` joined, `~` changed, `-` left). Stops on Ctrl-C
    or after --duration, and says what to try next.
    """

    log_to_stderr()

    async def run() -> None:
        with trio.move_on_after(math.inf if duration is None else duration):
            await run_demo(nodes, churn, seed, click.echo)
        click.echo("time's up, bye")
        click.echo(NEXT_STEP)

    def interrupted() -> None:
        click.echo("interrupted, bye")
        click.echo(NEXT_STEP)

    status = run_command(run, error=(TrionodesError, CommandError), on_interrupt=interrupted)
    click.get_current_context().exit(status)
