"""Developer tasks for trionodes.

List the sessions with ``nox -l`` (e.g. ``.venv/bin/python -m nox -l``). A plain
``nox`` runs the test suite on every supported Python found on the machine (those
missing are skipped, unless ``--error-on-missing-interpreters``, which CI passes),
then the checks: ruff, mypy --strict, the generated-code drift check and the strict
docs build. The other sessions build their virtualenv from the interpreter that runs
nox; tool versions come from ``[dependency-groups]`` in pyproject.toml.
"""

from __future__ import annotations

import difflib
import filecmp
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import nox
from nox.command import CommandFailed

nox.needs_version = ">=2024.10.9"  # nox.project.dependency_groups
nox.options.sessions = ["tests", "lint", "proto", "docs"]
nox.options.reuse_venv = "yes"
# uv when it is installed (faster); otherwise the stdlib venv + pip, which is
# all a machine with just Python needs.
nox.options.default_venv_backend = "uv|venv"

ROOT = Path(__file__).resolve().parent
PROTO_SRC = ROOT / "proto"
PROTO_PKG = ROOT / "trionodes" / "_proto"
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")


PYTHONS = ["3.11", "3.12", "3.13", "3.14", "3.15"]


def _groups(*names: str) -> tuple[str, ...]:
    return nox.project.dependency_groups(PYPROJECT, *names)


def _let_pyenv_shims_find_every_python() -> None:
    """Make pyenv's ``pythonX.Y`` shims answer for every version pyenv has installed.

    A shim for a version outside the selected ones exits with "command not found",
    so nox would take that Python for missing. Only when the user chose nothing.
    """
    pyenv = shutil.which("pyenv")
    if pyenv is None or "PYENV_VERSION" in os.environ:
        return
    listed = subprocess.run(
        [pyenv, "versions", "--bare", "--skip-aliases"],
        capture_output=True,
        text=True,
        check=False,
    )
    installed = [v for v in listed.stdout.split() if v.rsplit(".", 1)[0] in PYTHONS]
    if installed:
        os.environ["PYENV_VERSION"] = ":".join(installed)


_let_pyenv_shims_find_every_python()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite on each supported Python (extra arguments go to pytest)."""
    # Editable: the tests import the checkout, and the commands they start as
    # subprocesses must run the same code, not a copy made at install time.
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check and mypy --strict."""
    session.install(*_groups("lint"))
    session.install("-e", ".[test]")
    # Run every check even when an earlier one fails, then report them all.
    failed = []
    for cmd in (
        ("ruff", "check", *session.posargs),
        ("ruff", "format", "--check"),
        ("mypy",),
    ):
        try:
            session.run(*cmd)
        except CommandFailed:
            failed.append(" ".join(cmd))
    if failed:
        session.error("failed: " + "; ".join(failed))


@nox.session
def proto(session: nox.Session) -> None:
    """Check trionodes/_proto against freshly generated code (`-- --write` replaces it)."""
    write = False
    for arg in session.posargs:
        if arg == "--write":
            write = True
        else:
            session.error(f"unknown argument {arg!r} (the only one is --write)")

    session.install(*_groups("proto"))
    protos = sorted(p.relative_to(PROTO_SRC).as_posix() for p in PROTO_SRC.rglob("*.proto"))
    if not protos:
        session.error(f"no .proto files under {PROTO_SRC}")

    with tempfile.TemporaryDirectory(prefix="trionodes-proto-") as tmp:
        out = Path(tmp, "out")
        workdir = Path(tmp, "cwd")
        out.mkdir()
        workdir.mkdir()
        # The compiler pipes its output through `ruff check --fix` and
        # `ruff format`, found on PATH (nox puts the session's bin dir
        # first). Run it outside the repo, with no user config dir, so
        # that ruff uses its defaults and not our [tool.ruff] or ~/.config.
        with session.chdir(workdir):
            session.run(
                "python",
                "-m",
                "grpc_tools.protoc",
                f"--proto_path={PROTO_SRC}",
                f"--python_betterproto2_out={out}",
                "--python_betterproto2_opt=client_generation=none,server_generation=none",
                *protos,
                env={"XDG_CONFIG_HOME": str(workdir)},
            )

        if write:
            shutil.rmtree(PROTO_PKG, ignore_errors=True)
            shutil.copytree(out, PROTO_PKG)
            session.log(f"wrote {PROTO_PKG.relative_to(ROOT)}")
            return

        diff = _tree_diff(PROTO_PKG, out)
        if diff:
            print("".join(diff))
            session.error(
                "trionodes/_proto differs from what the pinned tools generate "
                "from proto/ (diff above); run `nox -s proto -- --write`"
            )
        session.log("trionodes/_proto is up to date")


def _files(root: Path) -> set[str]:
    if not root.is_dir():
        return set()
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def _tree_diff(committed: Path, generated: Path) -> list[str]:
    """Unified diff lines turning `committed` into `generated`, as relative paths."""
    lines: list[str] = []
    have, want = _files(committed), _files(generated)
    for name in sorted(have | want):
        old, new = committed / name, generated / name
        if name in have and name in want and filecmp.cmp(old, new, shallow=False):
            continue
        a = old.read_text(encoding="utf-8").splitlines(keepends=True) if name in have else []
        b = new.read_text(encoding="utf-8").splitlines(keepends=True) if name in want else []
        label = f"trionodes/_proto/{name}"
        chunk = list(
            difflib.unified_diff(
                a,
                b,
                fromfile=f"a/{label}" if name in have else os.devnull,
                tofile=f"b/{label}" if name in want else os.devnull,
            )
        )
        if not chunk:  # same text, different bytes (e.g. line endings)
            chunk = [f"Binary or line-ending difference in {label}\n"]
        for line in chunk:
            lines.append(line if line.endswith("\n") else f"{line}\n\\ No newline at end of file\n")
    return lines


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/ (strict: warnings fail)."""
    session.install(*_groups("docs"))
    session.install(".")
    # Silence mkdocs-material's end-of-life banner.
    session.run("mkdocs", "build", "--strict", *session.posargs, env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def demo(session: nox.Session) -> None:
    """Install trionodes and run `trionodes demo` (extra arguments are passed on)."""
    session.install(".[cli]")
    session.run("trionodes", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks (`python -m benchmarks`, extra arguments passed on)."""
    # The `bench` group: grpcio and protobuf for the hand-written baseline client.
    session.install(*_groups("bench"))
    session.install(".")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """Soak run: faults against a changing cluster for minutes (`-- --duration 600`).

    Not in the default sessions. Extra arguments go to `python -m tests.soak`
    (`-- --help` lists them); it exits non-zero when a follower ends wrong, something
    leaks or memory grows.
    """
    session.install(".")
    session.run("python", "-m", "tests.soak", *session.posargs)
