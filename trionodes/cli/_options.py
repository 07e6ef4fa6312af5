"""Command-line options shared by several commands.

``watch`` and ``top`` take one or more endpoints, the TLS options and the cluster
options (:func:`connection_options`, which hands the command one
:class:`~trionodes.cli._connect.Target`); ``leader`` takes endpoints and credentials
(:func:`leader_options`); ``serve`` and ``demo`` take the options of a simulated
cluster (:func:`simulation_options`). Every command's help ends with its exit
statuses (:func:`exit_status_help`).
"""

from __future__ import annotations

import functools
import re
import shlex
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

import trionodes
from trionodes import DEFAULT_PORT, Endpoint, EndpointError, parse_endpoint

from . import EXIT_ERROR, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE
from ._connect import CredentialFiles, Target, terminal_words

_F = TypeVar("_F", bound=Callable[..., Any])

_WATCH_ERROR = """the watch ended with an error (for example the Curator
     refused the call, TLS failed, or a cluster's credentials cannot be used);
     the reason is printed on stderr"""
_USAGE = """bad command line, a file it names does not exist, a single
     server's certificate files cannot be used, or --cert and --key are swapped"""
_TIMEOUT = "--timeout ran out before the whole cluster was read"

# A PEM block's first line, and its label.
_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


def exit_status_help(
    ok: str, error: str = _WATCH_ERROR, usage: str = _USAGE, timeout: str | None = None
) -> str:
    """An "Exit status" paragraph for a command's help (``\\b`` keeps its layout)."""
    lines = [f"  {EXIT_OK}  {ok}", f"  {EXIT_ERROR}  {error}", f"  {EXIT_USAGE}  {usage}"]
    if timeout is not None:
        lines.append(f"  {EXIT_TIMEOUT}  {timeout}")
    return "\b\nExit status:\n" + "\n".join(lines)


def watch_exit_status_help(ok: str) -> str:
    """The "Exit status" paragraph of ``watch`` and ``top``."""
    return exit_status_help(ok, timeout=_TIMEOUT)


def timeout_option(default: str) -> Callable[[_F], _F]:
    """The ``--timeout SECONDS`` of ``watch``, ``top`` and ``leader`` (None: no limit).

    Args:
        default: What the help says of the default.
    """
    return click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        metavar="SECONDS",
        help=f"Give up, with exit status {EXIT_TIMEOUT}, if not done within SECONDS. {default}",
    )


def endpoint_text(host: str, port: int) -> str:
    """``HOST:PORT``, with an IPv6 address in brackets."""
    return str(Endpoint(host, port))


def parse_endpoints(
    ctx: click.Context, param: click.Parameter, values: Sequence[str]
) -> tuple[Endpoint, ...]:
    """Read each ``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` (port 7835 by default).

    Raises:
        click.BadParameter: One is not of those forms; the message says what to write.
    """
    try:
        return tuple(parse_endpoint(value) for value in values)
    except EndpointError as exc:
        raise click.BadParameter(str(exc)) from None


def _metroctl_dir(value: str | None) -> tuple[bool, Path | None]:
    """``--metroctl-config``: whether it was given, and its directory (None: default)."""
    if value is None:
        return False, None
    return True, Path(value) if value else None


def _check_endpoints(endpoints: Sequence[Endpoint], metroctl_config: str | None) -> None:
    if endpoints:
        return
    message = (
        f"no endpoint: give one or more control-plane nodes, as 10.0.0.1 or 10.0.0.1:{DEFAULT_PORT}"
    )
    if metroctl_config:
        # An optional value takes the next word: `--metroctl-config 10.0.0.1` ate it.
        message += (
            f" (--metroctl-config took {metroctl_config!r} as its directory: write the "
            "endpoints before it, or --metroctl-config=DIR)"
        )
    raise click.UsageError(message)


def _pem_given(ca: Path | None, cert: Path | None, key: Path | None) -> list[str]:
    return [name for name, value in (("--ca", ca), ("--cert", cert), ("--key", key)) if value]


def _pem_kinds(path: Path) -> set[str]:
    """What the PEM file holds: ``certificate``, ``key``, both, or (unreadable) neither."""
    try:
        labels = set(_PEM_LABEL.findall(path.read_bytes()))
    except OSError:
        return set()
    kinds = {"certificate"} if b"CERTIFICATE" in labels else set()
    if any(label.endswith(b"PRIVATE KEY") for label in labels):
        kinds.add("key")
    return kinds


def check_not_swapped(cert: Path | None, key: Path | None) -> None:
    """Refuse ``--cert`` and ``--key`` given the wrong way round, naming both files.

    Raises:
        click.UsageError: The ``--cert`` file holds only a private key and the
            ``--key`` file only a certificate.
    """
    if cert is None or key is None:
        return
    if _pem_kinds(cert) == {"key"} and _pem_kinds(key) == {"certificate"}:
        raise click.UsageError(
            f"--cert and --key are swapped: {cert} holds a private key and {key} a "
            "certificate. Give the certificate as --cert and its key as --key: "
            f"--cert {shlex.quote(str(key))} --key {shlex.quote(str(cert))}"
        )


def _certificate_files_problem(ca: Path, cert: Path, key: Path, error: Exception) -> str:
    """Why a single server's PEM files cannot make a TLS context, naming the file.

    OpenSSL's own message names no file (``[SSL] PEM lib``): the files are read
    again by :meth:`trionodes.Credentials.from_pem_files`, whose checks say which
    file is wrong and how.
    """
    try:
        trionodes.Credentials.from_pem_files(ca=ca, cert=cert, key=key)
    except trionodes.CredentialsError as found:
        return terminal_words(str(found))
    return (
        f"cannot use --cert {cert} with --key {key}: {error} (metroctl's owner-key.pem "
        "can be read only when following a cluster: add --cluster, or use "
        "--metroctl-config)"
    )


def make_target(
    endpoints: Sequence[Endpoint],
    *,
    cluster: bool = False,
    metroctl_config: str | None = None,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    server_hostname: str | None = None,
    no_check_hostname: bool = False,
) -> Target:
    """The :class:`Target` that the endpoints and the options describe.

    Cluster mode (follow whichever node leads, through :func:`trionodes.open_cluster`)
    when there are several endpoints, ``--metroctl-config`` or ``--cluster``; else the
    single server at the endpoint (:func:`trionodes.open_curator`). In cluster mode
    the PEM files become :class:`trionodes.Credentials`, read when connecting; for a
    single server they make a client TLS context now.

    Raises:
        click.UsageError: No endpoint; the TLS options are incomplete, given without
            TLS, or do not apply to the mode; or a single server's certificate files
            cannot be used.
    """
    _check_endpoints(endpoints, metroctl_config)
    check_not_swapped(cert, key)
    given = _pem_given(ca, cert, key)
    if given and len(given) < 3:
        raise click.UsageError(
            f"TLS needs --ca, --cert and --key together (got {', '.join(given)})"
        )
    metroctl, metroctl_dir = _metroctl_dir(metroctl_config)
    if metroctl and given:
        raise click.UsageError("give either --metroctl-config or --ca, --cert and --key, not both")
    if cluster or metroctl or len(endpoints) > 1:
        if server_hostname is not None or no_check_hostname:
            raise click.UsageError(
                "--server-hostname and --no-check-hostname are for a single server: a "
                "cluster's nodes are checked by the node ID each must have, never by "
                "host name; leave them out"
            )
        files = CredentialFiles(metroctl, metroctl_dir, ca, cert, key)
        return Target(tuple(endpoints), cluster=True, credentials=files)
    if ca is None or cert is None or key is None:
        if server_hostname is not None or no_check_hostname:
            raise click.UsageError("--server-hostname and --no-check-hostname need TLS")
        return Target(tuple(endpoints))
    try:
        context = trionodes.client_ssl_context(ca, cert, key, check_hostname=not no_check_hostname)
    except (ssl.SSLError, ValueError, OSError) as exc:
        raise click.UsageError(_certificate_files_problem(ca, cert, key, exc)) from None
    return Target(tuple(endpoints), ssl=context, server_hostname=server_hostname)


def make_credentials(
    endpoints: Sequence[Endpoint],
    *,
    metroctl_config: str | None = None,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
) -> CredentialFiles:
    """The credentials of ``leader``: the CA alone will do.

    Raises:
        click.UsageError: No endpoint, ``--cert`` or ``--key`` without the others, or
            both ``--metroctl-config`` and PEM files.
    """
    _check_endpoints(endpoints, metroctl_config)
    check_not_swapped(cert, key)
    given = _pem_given(ca, cert, key)
    if (cert is None) != (key is None) or (cert is not None and ca is None):
        raise click.UsageError(
            f"--cert and --key go together, with --ca (got {', '.join(given)}); "
            "--ca alone is enough to find the leader"
        )
    metroctl, metroctl_dir = _metroctl_dir(metroctl_config)
    if metroctl and given:
        raise click.UsageError(
            "give either --metroctl-config or --ca (and --cert, --key), not both"
        )
    return CredentialFiles(metroctl, metroctl_dir, ca, cert, key)


_PEM_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)

_ENDPOINTS = click.argument("endpoints", nargs=-1, callback=parse_endpoints, metavar="ENDPOINT...")


def _metroctl_option(what: str) -> Callable[[_F], _F]:
    return click.option(
        "--metroctl-config",
        "metroctl_config",
        is_flag=False,
        flag_value="",
        default=None,
        metavar="[DIR]",
        help="Use the credentials metroctl keeps (ca.pem, owner.pem, owner-key.pem) in "
        "DIR, by default metroctl's own directory ($XDG_CONFIG_HOME/metroctl, or "
        f"~/.config/metroctl){what}. Write the endpoints before it, or give DIR as "
        "--metroctl-config=DIR.",
    )


def _pem_options(ca_help: str) -> list[Callable[[_F], _F]]:
    return [
        click.option("--ca", type=_PEM_FILE, metavar="FILE", help=ca_help),
        click.option(
            "--cert",
            type=_PEM_FILE,
            metavar="FILE",
            help="The client certificate (PEM) to present, issued by the cluster CA.",
        ),
        click.option(
            "--key",
            type=_PEM_FILE,
            metavar="FILE",
            help="The client certificate's key (PEM; following a cluster, also "
            "metroctl's owner-key.pem).",
        ),
    ]


def connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the endpoints, the cluster options and the TLS options to a command.

    The command receives them as one keyword argument, ``target`` (a :class:`Target`),
    instead of one argument per option.
    """

    @functools.wraps(command)
    def with_target(
        *,
        endpoints: tuple[Endpoint, ...],
        cluster: bool,
        metroctl_config: str | None,
        ca: Path | None,
        cert: Path | None,
        key: Path | None,
        server_hostname: str | None,
        no_check_hostname: bool,
        **options: Any,
    ) -> Any:
        target = make_target(
            endpoints,
            cluster=cluster,
            metroctl_config=metroctl_config,
            ca=ca,
            cert=cert,
            key=key,
            server_hostname=server_hostname,
            no_check_hostname=no_check_hostname,
        )
        return command(target=target, **options)

    return _add(
        with_target,
        _ENDPOINTS,
        click.option(
            "--cluster",
            is_flag=True,
            help="Follow whichever node leads the cluster, even with one endpoint "
            "(implied by several endpoints or --metroctl-config).",
        ),
        _metroctl_option(", and follow the cluster's leader"),
        *_pem_options(
            "The cluster CA certificate (PEM) to verify the Curator with. Give it "
            "with --cert and --key (mutual TLS); leave all three out for plain text."
        ),
        click.option(
            "--server-hostname",
            metavar="NAME",
            help="A single server only: the name the Curator's certificate must hold, "
            "when it is not the endpoint's host (for example when connecting by "
            "address). Needs TLS.",
        ),
        click.option(
            "--no-check-hostname",
            is_flag=True,
            help="A single server only: accept a Curator certificate that names another "
            "host (it must still be issued by the CA). For certificates that name no host.",
        ),
    )


def leader_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the endpoints and the credentials options of ``leader`` to a command.

    The command receives ``endpoints`` (a tuple of endpoints) and ``credentials`` (a
    :class:`~trionodes.cli._connect.CredentialFiles`).
    """

    @functools.wraps(command)
    def with_credentials(
        *,
        endpoints: tuple[Endpoint, ...],
        metroctl_config: str | None,
        ca: Path | None,
        cert: Path | None,
        key: Path | None,
        **options: Any,
    ) -> Any:
        credentials = make_credentials(
            endpoints, metroctl_config=metroctl_config, ca=ca, cert=cert, key=key
        )
        return command(endpoints=endpoints, credentials=credentials, **options)

    return _add(
        with_credentials,
        _ENDPOINTS,
        _metroctl_option(""),
        *_pem_options(
            "The cluster CA certificate (PEM) to verify the nodes with; enough on its "
            "own to find the leader. Leave it out for plain text."
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
