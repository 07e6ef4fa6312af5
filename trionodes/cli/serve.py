"""``trionodes serve``: a simulated Curator that keeps changing, until Ctrl-C.

Serves the fake Curator of :mod:`trionodes.testing` on a real port, plain text or
(with ``--tls DIR``) mutual TLS with throwaway certificates, and prints the
``trionodes watch`` command that follows it.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Callable
from functools import partial
from pathlib import Path

import click
import trio

from trionodes.testing import open_fake_curator, run_churn, server_ssl_context

from ._certs import ServeFiles, make_certificates
from ._cluster import demo_nodes
from ._format import count_text
from ._options import endpoint_text, exit_status_help, simulation_options
from ._run import CommandError, run_command


def watch_command(host: str, port: int, files: ServeFiles | None) -> str:
    """The ``trionodes watch`` command line that follows a ``trionodes serve``."""
    words = ["trionodes", "watch", endpoint_text(host, port)]
    if files is not None:
        words += ["--ca", str(files.ca), "--cert", str(files.client_cert)]
        words += ["--key", str(files.client_key)]
    return shlex.join(words)


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
    "pip install 'trionodes[serve-tls]'.",
)
def serve(
    host: str, port: int, nodes: int, churn: float, seed: int | None, tls_dir: Path | None
) -> None:
    """Run a simulated Curator until Ctrl-C.

    Serves the Curator's Watch call from an in-memory cluster that keeps changing,
    the way a real Curator serves it. Prints where it listens and the `trionodes
    watch` command that follows it; point your own program at it just the same.
    """
    run = partial(run_serve, host, port, nodes, churn, seed, tls_dir, click.echo)
    click.get_current_context().exit(run_command(run, error=CommandError))
