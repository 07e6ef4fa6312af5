"""The options that commands share: HOST:PORT, TLS, and every command's help."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from trionodes.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from trionodes.cli._app import app
from trionodes.cli._options import parse_endpoint


def test_parse_endpoint() -> None:
    ctx, argument = click.Context(app), click.Argument(["endpoint"])
    assert parse_endpoint(ctx, argument, "127.0.0.1:7835") == ("127.0.0.1", 7835)
    assert parse_endpoint(ctx, argument, "[::1]:1") == ("::1", 1)
    assert parse_endpoint(ctx, argument, "curator.example:65535") == ("curator.example", 65535)


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("localhost", "is not HOST:PORT"),
        (":7835", "is not HOST:PORT"),
        ("::1:7835", "IPv6 address in brackets"),
        ("host:0", "port must be a number from 1 to 65535"),
        ("host:65536", "port must be a number from 1 to 65535"),
        ("host:http", "port must be a number from 1 to 65535"),
    ],
)
def test_bad_endpoint_is_a_usage_error(endpoint: str, message: str) -> None:
    for command in ("watch", "top"):
        result = CliRunner().invoke(app, [command, endpoint])
        assert result.exit_code == EXIT_USAGE
        assert message in result.output


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
    assert "cannot use the certificate files" in result.output


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("watch", ["--node ID", "--json", "--ca FILE", "--cert FILE", "--key FILE",
                   "--server-hostname NAME", "--no-check-hostname"]),
        ("top", ["--interval SECONDS", "--once", "--ca FILE", "--cert FILE", "--key FILE",
                 "--server-hostname NAME", "--no-check-hostname"]),
        ("serve", ["--host ADDRESS", "--port PORT", "--nodes N", "--churn PER_SECOND",
                   "--seed S", "--tls DIR"]),
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
