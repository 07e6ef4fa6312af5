"""The ``trionodes`` command line: ``watch``, ``top``, ``leader``, ``serve`` and ``demo``.

It needs the ``cli`` extra (click and rich: ``pip install 'trionodes[cli]'``), which
the library does not. So this module imports neither: it holds the exit statuses and
:func:`main`, the console script's entry point, which says how to install the extra
when it is missing and otherwise runs the click group of :mod:`trionodes.cli._app`.

One module per command (:mod:`~trionodes.cli.watch`, :mod:`~trionodes.cli.top`,
:mod:`~trionodes.cli.leader`, :mod:`~trionodes.cli.serve`, :mod:`~trionodes.cli.demo`);
what they share is in ``_run`` (running under Trio, exit statuses), ``_options``
(command-line options), ``_connect`` (a single server or a cluster, credentials, the
library's words as flags), ``_format`` (nodes as text and JSON), ``_cluster`` and
``_certs``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_TIMEOUT", "EXIT_USAGE", "main"]

# Exit statuses, documented in the commands' help and in docs/cli.md.
EXIT_OK = 0
"""Ended by Ctrl-C, by ``--duration``, after ``top --once``, or the node of
``watch --node`` was deleted."""
EXIT_ERROR = 1
"""The watch ended with an error (the Curator refused the call, TLS failed, a
cluster's credentials cannot be used), ``leader`` found no leader, ``serve`` could not
listen, or the ``cli`` extra is not installed."""
EXIT_USAGE = 2
"""Bad command line: unknown option, bad value or endpoint, a file that does not
exist, a single server's unusable certificate files, --cert and --key swapped."""
EXIT_TIMEOUT = 3
"""``--timeout`` ran out: ``watch`` or ``top`` had not read the whole cluster yet, or
no node had told ``leader`` who leads."""

# What the command line needs beyond the library: the `cli` extra of pyproject.toml.
_EXTRA_MODULES = ("click", "rich")


def main(args: Sequence[str] | None = None) -> None:
    """Run the ``trionodes`` command line; exits the process with its status.

    Args:
        args: The arguments after the program name; None for ``sys.argv[1:]``.

    Without the ``cli`` extra, prints one line saying how to install it and exits
    with :data:`EXIT_ERROR`.
    """
    for name in _EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            print(
                f"trionodes: error: the command line needs {name}, which is not installed: "
                "pip install 'trionodes[cli]'",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_ERROR) from None
    from ._app import app

    app.main(args, prog_name="trionodes")
