"""The click group ``trionodes``, made of the commands of this package.

Imports click and rich; :func:`trionodes.cli.main` imports this module only once it
has checked that they are installed.
"""

from __future__ import annotations

import click

from .demo import demo
from .serve import serve
from .top import top
from .watch import watch


@click.group()
def app() -> None:
    """Follow the nodes of a Monogon Metropolis cluster.

    HOST:PORT is a Curator's address, e.g. 127.0.0.1:7835 or [::1]:7835. Try the
    commands against a simulated cluster: run `trionodes serve` in one terminal,
    then the `trionodes watch` command it prints in another.
    """


for _command in (watch, top, serve, demo):
    app.add_command(_command)
