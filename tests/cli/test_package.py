"""The command line as a package: its extra, its entry point, and the library without it."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import trionodes
from trionodes import _version
from trionodes.cli import EXIT_ERROR, EXIT_OK

from .process import CLI

CHECKOUT = Path(__file__).parent.parent.parent


def python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; return how it went."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_library_imports_neither_click_nor_rich() -> None:
    result = python(
        "import trionodes, sys; assert 'click' not in sys.modules and 'rich' not in sys.modules"
    )
    assert result.returncode == 0, result.stderr


def test_importing_the_cli_package_needs_neither() -> None:
    # The console script imports `trionodes.cli` before it can say what is missing.
    result = python(
        "import trionodes.cli, sys; assert 'click' not in sys.modules and 'rich' not in sys.modules"
    )
    assert result.returncode == 0, result.stderr


# The extra is missing: an import of it fails as it would if it were not installed.
WITHOUT = """
import sys
sys.modules[{name!r}] = None
from trionodes.cli import main
main(["--help"])
"""


def test_without_the_extra_says_how_to_install_it() -> None:
    for name in ("click", "rich"):
        result = python(WITHOUT.format(name=name))
        assert result.returncode == EXIT_ERROR
        assert result.stdout == ""
        assert result.stderr == (
            f"trionodes: error: the command line needs {name}, which is not installed: "
            "pip install 'trionodes[cli]'\n"
        )


def test_python_m_runs_the_command_line() -> None:
    result = subprocess.run(
        [*CLI, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: trionodes [OPTIONS] [COMMAND]")
    for command in ("watch", "top", "serve", "demo"):
        assert command in result.stdout


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, check=False)


def test_bare_trionodes_prints_the_help_and_the_commands() -> None:
    result = run_cli()
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stderr == ""
    assert result.stdout == run_cli("--help").stdout
    commands = result.stdout.split("Commands:\n", 1)[1]
    listed = [line.split()[0] for line in commands.splitlines() if line.strip()]
    assert listed == ["demo", "leader", "serve", "top", "watch"]


def pyproject_version() -> str:
    project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]
    version: str = project["version"]
    return version


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout == f"trionodes {pyproject_version()}\n"
    assert trionodes.__version__ == pyproject_version()
    assert "__version__" in trionodes.__all__


def test_version_of_a_checkout_that_is_not_installed(tmp_path: Path) -> None:
    # The checkout's sources on PYTHONPATH, from a directory with no trionodes: the
    # version comes from its pyproject.toml, whatever may be installed.
    code = "import trionodes; print(trionodes.__version__)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={"PYTHONPATH": str(CHECKOUT), "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{pyproject_version()}\n"


def test_version_without_a_checkout_or_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "trionodes"
    package.mkdir()
    assert _version.find_version(package) == importlib.metadata.version("trionodes")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\nversion = "9"\n')
    assert _version.find_version(package) == importlib.metadata.version("trionodes")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "trionodes"\nversion = "7.1"\n')
    assert _version.find_version(package) == "7.1"

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    (tmp_path / "pyproject.toml").unlink()
    assert _version.find_version(package) == _version.UNKNOWN_VERSION == "0+unknown"
