"""The ``trionodes`` command line.

Formatting (node in, text out) is kept apart from following (:class:`ChangePrinter`)
and from running (the click commands), so each can be tested on its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import partial

import click
import trio

import trionodes
from trionodes import Node, NodeState
from trionodes.testing import make_node, open_fake_curator, run_churn

# Hex digits of a node id kept by short_id: enough to tell apart the nodes of a demo.
_ID_TAIL = 4
_ID_PREFIX = "metropolis-"

# Nodes of the simulated cluster that are Kubernetes controllers and consensus members.
_CONTROL_PLANE_NODES = 3


# Formatting: pure functions from nodes to text.


def short_id(node_id: str, keep: int = _ID_TAIL) -> str:
    """Shorten a node id for display, keeping its prefix and its last digits.

    Args:
        node_id: A node id such as ``metropolis-000…0001``.
        keep: How many trailing characters of the id's body to keep.

    Returns:
        The id with all but the end of its body elided (``metropolis-…0001``), or
        the id unchanged when its body is at most twice ``keep`` long.
    """
    prefix = _ID_PREFIX if node_id.startswith(_ID_PREFIX) else ""
    body = node_id[len(prefix) :]
    if len(body) <= 2 * keep:
        return node_id
    return f"{prefix}…{body[-keep:]}"


def state_text(node: Node) -> str:
    """The node's state as a word, e.g. ``UP`` (``UNKNOWN(7)`` for unknown values)."""
    return node.state.name or f"UNKNOWN({int(node.state)})"


def address_text(node: Node) -> str:
    """The node's external address, or ``-`` when it has none."""
    return (node.status.external_address if node.status else "") or "-"


def roles_text(node: Node) -> str:
    """The node's roles, comma-separated (``worker,controller,consensus``), or ``-``."""
    roles = node.roles
    if roles is None:
        return "-"
    names = [
        name
        for name, role in (
            ("worker", roles.kubernetes_worker),
            ("controller", roles.kubernetes_controller),
            ("consensus", roles.consensus_member),
        )
        if role is not None
    ]
    return ",".join(names) or "-"


def _labels(node: Node) -> set[str]:
    return {f"{pair.key}={pair.value}" for pair in node.labels.pairs} if node.labels else set()


def _prefixes(node: Node) -> set[str]:
    return {prefix.cidr for prefix in node.clusternet.prefixes} if node.clusternet else set()


def _set_diff(name: str, before: set[str], after: set[str]) -> list[str]:
    if before == after:
        return []
    removed = [f"-{item}" for item in sorted(before - after)]
    added = [f"+{item}" for item in sorted(after - before)]
    return [" ".join([name, *removed, *added])]


def diff_nodes(prev: Node, node: Node) -> list[str]:
    """Describe what changed between two states of a node.

    Compares state, external address, roles, labels and cluster network prefixes.

    Args:
        prev: The earlier state.
        node: The later state.

    Returns:
        One phrase per changed field, e.g. ``address 10.0.0.3 -> 10.4.7.9`` or
        ``labels -rack=r1 +rack=r2``; ``other fields`` when only fields not shown
        changed; empty when the two are equal.
    """
    changes = [
        f"{name} {before} -> {after}"
        for name, text in (("state", state_text), ("address", address_text), ("roles", roles_text))
        if (before := text(prev)) != (after := text(node))
    ]
    changes += _set_diff("labels", _labels(prev), _labels(node))
    changes += _set_diff("prefixes", _prefixes(prev), _prefixes(node))
    if not changes and prev != node:
        changes.append("other fields")
    return changes


def format_new(node: Node) -> str:
    """One line for a node that appeared: ``+ id  STATE  address  roles``."""
    state, address = state_text(node), address_text(node)
    return f"  + {short_id(node.id)}  {state:<8} {address:<15} {roles_text(node)}"


def format_updated(prev: Node, node: Node) -> str:
    """One line for a node that changed: ``~ id  what changed``."""
    return f"  ~ {short_id(node.id)}  {', '.join(diff_nodes(prev, node))}"


def format_deleted(prev: Node) -> str:
    """One line for a node that left: ``- id  (was STATE address)``."""
    return f"  - {short_id(prev.id)}  (was {state_text(prev)} {address_text(prev)})"


def format_header(number: int, nodes: int) -> str:
    """The line above a batch's changes.

    Args:
        number: The batch's number; the first (1) is the initial cluster.
        nodes: How many nodes the cluster has after the batch.
    """
    if number == 1:
        return f"initial cluster: {nodes} node{'' if nodes == 1 else 's'}"
    return f"batch {number}"


# Following: a Follower that turns each batch into lines of text.


class ChangePrinter:
    """A :class:`~trionodes.Follower` that writes each batch as a block of lines.

    The lines of a batch are collected as its changes arrive and written out together
    when it is done, under a header (see :func:`format_header`).

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

    def filter(self, node: Node) -> bool:
        """Admit every node."""
        return True

    def equals(self, a: Node, b: Node) -> bool:
        """Compare whole messages."""
        return a == b

    def new(self, node: Node) -> None:
        """Collect a line for a new node."""
        self.nodes += 1
        self._lines.append(format_new(node))

    def updated(self, prev: Node, node: Node) -> None:
        """Collect a line for a changed node."""
        self._lines.append(format_updated(prev, node))

    def deleted(self, prev: Node) -> None:
        """Collect a line for a node that left."""
        self.nodes -= 1
        self._lines.append(format_deleted(prev))

    def batch_done(self) -> None:
        """Write the batch's lines under their header."""
        self.batches += 1
        self._write("\n".join([format_header(self.batches, self.nodes), *self._lines]))
        self._lines = []


# Running.


def demo_nodes(count: int) -> Iterator[Node]:
    """The simulated cluster's nodes before any change.

    The first three are Kubernetes controllers and consensus members (the first of
    them not a worker), the others plain workers; of a cluster larger than that, the
    last node is still NEW.

    Args:
        count: How many nodes.
    """
    for index in range(1, count + 1):
        control_plane = index <= _CONTROL_PLANE_NODES
        joining = index == count and count > _CONTROL_PLANE_NODES
        yield make_node(
            index,
            state=NodeState.NEW if joining else NodeState.UP,
            worker=index != 1,
            controller=control_plane,
            consensus=control_plane,
        )


async def run_demo(
    nodes: int, churn: float, seed: int | None, write: Callable[[str], object]
) -> None:
    """Serve a changing fake cluster and print its changes, until cancelled.

    Args:
        nodes: The cluster's size, at the start and on average.
        churn: Changes per second; 0 for none.
        seed: Seeds the changes; None for different changes each run.
        write: Called with each block of output.
    """
    async with open_fake_curator() as fake:
        fake.put(*demo_nodes(nodes))
        write(f"fake Curator on {fake.host}:{fake.port}, {churn:g} changes/s; Ctrl-C to stop")
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


@click.group()
def main() -> None:
    """Follow the nodes of a Monogon Metropolis cluster."""


@main.command()
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Stop after this many seconds. Default: run until Ctrl-C.",
)
@click.option(
    "--nodes",
    type=click.IntRange(min=0),
    default=6,
    show_default=True,
    metavar="N",
    help="Nodes in the simulated cluster, at the start and on average.",
)
@click.option(
    "--churn",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    metavar="PER_SECOND",
    help="Changes to the simulated cluster per second; 0 for none.",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    metavar="S",
    help="Seed for the changes, to repeat a run. Default: different changes each run.",
)
def demo(duration: float | None, nodes: int, churn: float, seed: int | None) -> None:
    """Follow a simulated cluster that keeps changing.

    Starts a fake Curator on 127.0.0.1 serving a simulated cluster that keeps
    changing, connects to it as to a real one, and prints the initial cluster and
    then each batch of changes. Stops on Ctrl-C or after --duration.
    """

    async def run() -> None:
        with trio.move_on_after(math.inf if duration is None else duration):
            await run_demo(nodes, churn, seed, click.echo)

    # Ctrl-C raises KeyboardInterrupt in the main task only, at a checkpoint. Raised
    # anywhere else, it could kill the trio-asyncio loop under the gRPC connection,
    # and the tasks waiting on that loop would then wait forever.
    interrupted = False
    try:
        trio.run(run, restrict_keyboard_interrupt_to_checkpoints=True)
    except* KeyboardInterrupt:
        interrupted = True
    click.echo("interrupted, bye" if interrupted else "time's up, bye")


if __name__ == "__main__":
    main()
