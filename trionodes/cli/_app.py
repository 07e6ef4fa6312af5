"""The click group ``trionodes``, made of the commands of this package.

Imports click and rich; :func:`trionodes.cli.main` imports this module only once it
has checked that they are installed.
"""

from __future__ import annotations

import click

import trionodes

from . import EXIT_OK
from .demo import demo
from .leader import leader
from .serve import serve
from .top import top
from .watch import watch


@click.group(invoke_without_command=True)
@click.version_option(trionodes.__version__, prog_name="trionodes", message="%(prog)s %(version)s")
@click.pass_context
def app(ctx: click.Context) -> None:
    """Follow the nodes of a Monogon Metropolis cluster.

    ENDPOINT is a control-plane node's address: `host` or `host:port` (port 7835
    by default), an IPv6 address in brackets, e.g. 10.0.0.1, localhost or
    [fd00::1]:7835. Give several to follow whichever node leads the cluster.

    New here? `trionodes demo` shows a simulated cluster changing. Then try the
    commands against one: run `trionodes serve` (or `trionodes serve --members 3`
    for a whole control plane) in one terminal, and the `trionodes watch` command
    it prints, or `trionodes top`, in another.
    """
    if ctx.invoked_subcommand is None:
        # No command: the help is the answer (click's default is a usage error).
        click.echo(ctx.get_help())
        ctx.exit(EXIT_OK)


for _command in (watch, top, leader, serve, demo):
    app.add_command(_command)
