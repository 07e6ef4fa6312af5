"""The command line as a package: its extra, its entry point, and the library without it."""

from __future__ import annotations

import subprocess
import sys

from trionodes.cli import EXIT_ERROR

from .process import CLI


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
    assert result.stdout.startswith("Usage: trionodes [OPTIONS] COMMAND")
    for command in ("watch", "top", "serve", "demo"):
        assert command in result.stdout
