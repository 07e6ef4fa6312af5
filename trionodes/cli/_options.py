"""Command-line options shared by several commands.

``watch`` and ``top`` take a Curator's ``HOST:PORT`` and the TLS options
(:func:`connection_options`, which hands the command one :class:`Target`);
``serve`` and ``demo`` take the options of a simulated cluster
(:func:`simulation_options`). Every command's help ends with its exit statuses
(:func:`exit_status_help`).
"""

from __future__ import annotations

import contextlib
import functools
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

import trionodes

from . import EXIT_ERROR, EXIT_OK, EXIT_USAGE

_F = TypeVar("_F", bound=Callable[..., Any])

_WATCH_ERROR = """the watch ended with an error (for example the Curator
     refused the call, or TLS failed); the reason is printed on stderr"""


def exit_status_help(
    ok: str,
    error: str = _WATCH_ERROR,
    usage: str = "bad command line or unusable certificate files",
) -> str:
    """An "Exit status" paragraph for a command's help (``\\b`` keeps its layout)."""
    return f"\b\nExit status:\n  {EXIT_OK}  {ok}\n  {EXIT_ERROR}  {error}\n  {EXIT_USAGE}  {usage}"


def endpoint_text(host: str, port: int) -> str:
    """``HOST:PORT``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_endpoint(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (an IPv6 address in brackets: ``[::1]:7835``) and check it.

    Raises:
        click.BadParameter: ``value`` is not of that form.
    """
    host, colon, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise click.BadParameter(f"{value!r}: write an IPv6 address in brackets, as [::1]:7835")
    if not colon or not host:
        raise click.BadParameter(f"{value!r} is not HOST:PORT")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise click.BadParameter(f"{value!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to reach a Curator, from the command line.

    Attributes:
        host: Host name or address.
        port: TCP port.
        ssl: The client TLS context; None for plain text.
        server_hostname: The name the Curator's certificate must hold, if not ``host``.
    """

    host: str
    port: int
    ssl: ssl.SSLContext | None = None
    server_hostname: str | None = None

    def __str__(self) -> str:
        return endpoint_text(self.host, self.port)

    def connect(self) -> contextlib.AbstractAsyncContextManager[trionodes.Curator]:
        """Open the connection (:func:`trionodes.open_curator`)."""
        return trionodes.open_curator(
            self.host, self.port, ssl=self.ssl, server_hostname=self.server_hostname
        )


def make_target(
    endpoint: tuple[str, int],
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    server_hostname: str | None,
    no_check_hostname: bool,
) -> Target:
    """The :class:`Target` that the endpoint argument and the TLS options describe.

    Raises:
        click.UsageError: The TLS options are incomplete, given without TLS, or the
            certificate files cannot be used.
    """
    host, port = endpoint
    given = [name for name, value in (("--ca", ca), ("--cert", cert), ("--key", key)) if value]
    if given and len(given) < 3:
        raise click.UsageError(
            f"TLS needs --ca, --cert and --key together (got {', '.join(given)})"
        )
    if ca is None or cert is None or key is None:
        if server_hostname is not None or no_check_hostname:
            raise click.UsageError("--server-hostname and --no-check-hostname need TLS")
        return Target(host, port)
    try:
        context = trionodes.client_ssl_context(ca, cert, key, check_hostname=not no_check_hostname)
    except (ssl.SSLError, ValueError) as exc:
        raise click.UsageError(f"cannot use the certificate files: {exc}") from None
    return Target(host, port, context, server_hostname)


_PEM_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the ``HOST:PORT`` argument and the TLS options to a command.

    The command receives them as one keyword argument, ``target`` (a :class:`Target`),
    instead of one argument per option.
    """

    @functools.wraps(command)
    def with_target(
        *,
        endpoint: tuple[str, int],
        ca: Path | None,
        cert: Path | None,
        key: Path | None,
        server_hostname: str | None,
        no_check_hostname: bool,
        **options: Any,
    ) -> Any:
        target = make_target(endpoint, ca, cert, key, server_hostname, no_check_hostname)
        return command(target=target, **options)

    return _add(
        with_target,
        click.argument("endpoint", callback=parse_endpoint, metavar="HOST:PORT"),
        click.option(
            "--ca",
            type=_PEM_FILE,
            metavar="FILE",
            help="The cluster CA certificate (PEM) to verify the Curator with. Give it "
            "with --cert and --key (mutual TLS); leave all three out for plain text.",
        ),
        click.option(
            "--cert",
            type=_PEM_FILE,
            metavar="FILE",
            help="The client certificate (PEM) to present, issued by the cluster CA.",
        ),
        click.option(
            "--key", type=_PEM_FILE, metavar="FILE", help="The client certificate's key (PEM)."
        ),
        click.option(
            "--server-hostname",
            metavar="NAME",
            help="The name the Curator's certificate must hold, when it is not HOST "
            "(for example when connecting by address). Needs TLS.",
        ),
        click.option(
            "--no-check-hostname",
            is_flag=True,
            help="Accept a Curator certificate that names another host (it must still "
            "be issued by the CA). For certificates that name no host.",
        ),
    )


def simulation_options(*, churn: float) -> Callable[[_F], _F]:
    """Add the options of a simulated cluster to a command; ``churn`` is the default.

    The command receives ``nodes`` (int), ``churn`` (float) and ``seed`` (int or None).
    """

    def add(command: _F) -> _F:
        return _add(
            command,
            click.option(
                "--nodes",
                type=click.IntRange(min=0),
                default=6,
                show_default=True,
                metavar="N",
                help="Nodes in the simulated cluster, at the start and on average.",
            ),
            click.option(
                "--churn",
                type=click.FloatRange(min=0),
                default=churn,
                show_default=True,
                metavar="PER_SECOND",
                help="Changes to the cluster per second (joins, state and address changes, "
                "leaves); 0 for none.",
            ),
            click.option(
                "--seed",
                type=int,
                default=None,
                metavar="S",
                help="Seed for the changes, to repeat a run. Default: different changes each run.",
            ),
        )

    return add


def _add(command: _F, *decorators: Callable[[_F], _F]) -> _F:
    """Apply ``decorators`` so that their options are listed in the order given."""
    for decorator in reversed(decorators):
        command = decorator(command)
    return command
