"""The click group ``trionodes``, made of the commands of this package.

Imports click and rich; :func:`trionodes.cli.main` imports this module only once it
has checked that they are installed.
"""

from __future__ import annotations

import click

from .demo import demo
from .leader import leader
from .serve import serve
from .top import top
from .watch import watch


@click.group()
def app() -> None:
    """Follow the nodes of a Monogon Metropolis cluster.

    ENDPOINT is a control-plane node's address: `host` or `host:port` (port 7835
    by default), an IPv6 address in brackets, e.g. 10.0.0.1 or [fd00::1]:7835.
    Give several to follow whichever node leads the cluster. Try the commands
    against a simulated cluster: run `trionodes serve --members 3` in one
    terminal, then the `trionodes watch` command it prints in another.
    """


for _command in (watch, top, leader, serve, demo):
    app.add_command(_command)
