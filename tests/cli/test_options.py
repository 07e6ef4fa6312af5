"""The options that commands share: endpoints, modes, TLS, and every command's help."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from trionodes import Endpoint
from trionodes.cli import EXIT_ERROR, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE
from trionodes.cli._app import app
from trionodes.cli._connect import CredentialFiles
from trionodes.cli._options import make_target, parse_endpoints

from .process import run


def test_parse_endpoints() -> None:
    ctx, argument = click.Context(app), click.Argument(["endpoints"], nargs=-1)
    assert parse_endpoints(
        ctx, argument, ["127.0.0.1:7835", "[::1]:1", "curator.example", "[fd00::1]"]
    ) == (
        Endpoint("127.0.0.1", 7835),
        Endpoint("::1", 1),
        Endpoint("curator.example", 7835),
        Endpoint("fd00::1", 7835),
    )


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        (":7835", "':7835' has no host: write HOST or HOST:PORT, as 10.0.0.1:7835"),
        ("::1:7835", "looks like an IPv6 address: put it in brackets, as [::1:7835]"),
        ("host:0", "'host:0' has no valid port (1 to 65535) after the colon"),
        ("host:65536", "has no valid port (1 to 65535)"),
        ("host:http", "has no valid port (1 to 65535)"),
        ("http://host", "has a URL scheme: drop it"),
    ],
)
def test_bad_endpoint_is_a_usage_error(endpoint: str, message: str) -> None:
    for command in ("watch", "top", "leader"):
        # A good endpoint first: each one is checked, wherever it is.
        result = CliRunner().invoke(app, [command, "10.0.0.1", endpoint])
        assert result.exit_code == EXIT_USAGE
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, result.output
        assert message in errors[0]


@pytest.mark.parametrize("command", ["watch", "top", "leader"])
def test_no_endpoint_is_a_usage_error(command: str) -> None:
    runner = CliRunner()
    result = runner.invoke(app, [command])
    assert result.exit_code == EXIT_USAGE
    assert "Error: no endpoint: give one or more control-plane nodes, as 10.0.0.1" in (
        result.output
    )
    # The optional DIR of --metroctl-config takes the next word: say so.
    result = runner.invoke(app, [command, "--metroctl-config", "10.0.0.1"])
    assert result.exit_code == EXIT_USAGE
    assert (
        "(--metroctl-config took '10.0.0.1' as its directory: write the endpoints "
        "before it, or --metroctl-config=DIR)"
    ) in " ".join(result.output.split())


def test_mode_follows_the_endpoints_and_options(tmp_path: Path) -> None:
    one, two = (Endpoint("10.0.0.1", 7835),), (Endpoint("10.0.0.1", 7835), Endpoint("h", 1))
    assert not make_target(one).cluster
    assert make_target(one, cluster=True).cluster
    assert make_target(two).cluster
    metroctl = make_target(one, metroctl_config="")
    assert metroctl.cluster
    assert metroctl.credentials == CredentialFiles(metroctl=True, metroctl_dir=None)
    assert make_target(one, metroctl_config="d").credentials.metroctl_dir == Path("d")
    pem = tmp_path / "x.pem"
    files = make_target(two, ca=pem, cert=pem, key=pem).credentials
    assert files == CredentialFiles(ca=pem, cert=pem, key=pem)


def test_tls_options_go_together(tmp_path: Path) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("not a certificate\n")
    runner = CliRunner()
    result = runner.invoke(app, ["watch", "h:1", "--ca", str(pem)])
    assert result.exit_code == EXIT_USAGE
    assert "TLS needs --ca, --cert and --key together (got --ca)" in result.output
    result = runner.invoke(app, ["top", "h:1", "--server-hostname", "curator"])
    assert result.exit_code == EXIT_USAGE
    assert "need TLS" in result.output
    result = runner.invoke(app, ["watch", "h:1", "--ca", str(tmp_path / "missing.pem")])
    assert result.exit_code == EXIT_USAGE
    assert "does not exist" in result.output
    tls = ["--ca", str(pem), "--cert", str(pem), "--key", str(pem)]
    result = runner.invoke(app, ["watch", "h:1", *tls])
    assert result.exit_code == EXIT_USAGE
    assert f"{pem}: is not a PEM file (no -----BEGIN ...----- block)" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["watch", "h", "h2", "--server-hostname", "n"],
         "--server-hostname and --no-check-hostname are for a single server"),
        (["top", "h", "--cluster", "--no-check-hostname"],
         "--server-hostname and --no-check-hostname are for a single server"),
        (["watch", "h", "--metroctl-config=d", "--ca", "{pem}", "--cert", "{pem}",
          "--key", "{pem}"],
         "give either --metroctl-config or --ca, --cert and --key, not both"),
        (["watch", "h", "h2", "--ca", "{pem}"],
         "TLS needs --ca, --cert and --key together (got --ca)"),
        (["leader", "h", "--cert", "{pem}", "--key", "{pem}"],
         "--cert and --key go together, with --ca (got --cert, --key)"),
        (["leader", "h", "--ca", "{pem}", "--key", "{pem}"],
         "--cert and --key go together, with --ca (got --ca, --key)"),
        (["leader", "h", "--metroctl-config=d", "--ca", "{pem}"],
         "give either --metroctl-config or --ca (and --cert, --key), not both"),
        (["serve", "--move-leader", "1"], "--move-leader needs --members"),
        (["serve", "--members", "3", "--port", "7835"],
         "--host and --port are for a lone Curator"),
    ],
)  # fmt: skip
def test_options_that_do_not_go_together(tmp_path: Path, args: list[str], message: str) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("not a certificate\n")
    result = CliRunner().invoke(app, [arg.format(pem=pem) for arg in args])
    assert result.exit_code == EXIT_USAGE, result.output
    assert message in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("watch", ["ENDPOINT...", "--node ID", "--json", "--timeout SECONDS", "--cluster",
                   "--metroctl-config [DIR]",
                   "--ca FILE", "--cert FILE", "--key FILE", "--server-hostname NAME",
                   "--no-check-hostname"]),
        ("top", ["ENDPOINT...", "--interval SECONDS", "--once", "--timeout SECONDS", "--cluster",
                 "--metroctl-config [DIR]", "--ca FILE", "--cert FILE", "--key FILE",
                 "--server-hostname NAME", "--no-check-hostname"]),
        ("leader", ["ENDPOINT...", "--json", "--timeout SECONDS", "--metroctl-config [DIR]",
                    "--ca FILE", "--cert FILE", "--key FILE"]),
        ("serve", ["--members N", "--move-leader SECONDS", "--host ADDRESS", "--port PORT",
                   "--nodes N", "--churn PER_SECOND", "--seed S", "--tls DIR"]),
    ],
)  # fmt: skip
def test_help_explains_every_option_and_exit_status(command: str, options: list[str]) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    for option in options:
        assert option in result.output
    assert "Exit status:" in result.output
    for status in (EXIT_OK, EXIT_ERROR, EXIT_USAGE):
        assert f"\n    {status}  " in result.output
    # Commands that wait for a cluster give up at --timeout, with a status of its own.
    timeout = f"\n    {EXIT_TIMEOUT}  --timeout ran out"
    assert (timeout in result.output) == (command != "serve")


# The addresses of issue 13, as a person types them, each run for real.
@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("http://127.0.0.1:42689",
         "'http://127.0.0.1:42689' has a URL scheme: drop it (write HOST or HOST:PORT, "
         "as 10.0.0.1:7835 or [fd00::1]:7835)"),
        ("::1", "'::1' looks like an IPv6 address: put it in brackets, as [::1] or [::1]:7835"),
    ],
)  # fmt: skip
async def test_a_bad_address_says_what_to_write(endpoint: str, message: str) -> None:
    async with run("watch", endpoint) as watch:
        status, stderr = await watch.wait()
    assert status == EXIT_USAGE
    assert stderr.splitlines()[-1] == f"Error: Invalid value for 'ENDPOINT...': {message}"


@pytest.mark.parametrize(
    ("endpoint", "meant"), [("[::1]", "[::1]:7835"), ("localhost", "localhost:7835")]
)
async def test_an_address_without_a_port_is_the_metropolis_port(endpoint: str, meant: str) -> None:
    # Valid: the command tries the default port (where nothing listens here), then gives
    # up at --timeout, naming where it tried.
    async with run("watch", endpoint, "--timeout", "1") as watch:
        status, stderr = await watch.wait()
    assert status == EXIT_TIMEOUT, stderr
    assert "Usage:" not in stderr
    assert stderr.splitlines()[-1].startswith(
        f"trionodes: error: could not read the cluster from {meant} within 1 s"
    )
