"""Every ```python block of README.md and docs/ runs as shown.

Sybil finds the blocks, and the ``<!-- skip: next "reason" -->`` comments that
mark the few that need a real cluster. Each block runs alone, in a fresh
namespace, as a script would (``__name__ == "__main__"``): a block that leans on
a name from an earlier block fails here with ``NameError``, as it would for a
reader who pastes it. It runs in an empty directory that also holds a cluster's
credentials, as a reader of the credentials page has them: ``ca.pem``,
``client.pem`` and ``client-key.pem``, and a metroctl directory under
``$XDG_CONFIG_HOME``.

A block that defines ``test_`` functions is a pytest test file: it runs under
pytest, in a subprocess, with ``trio_mode = true``, the setting the testing
how-to asks for. A block whose first line is a comment naming a Python file
(``# up_addresses.py``) is that file: it runs as the module of that name (so its
``if __name__ == "__main__":`` part does not), and later blocks of the same page
can import it. A block whose first line is ``# part of NAME.py`` is a fragment of
such a file, shown while a page builds it step by step: it must appear, as it is,
in the page's block for NAME.py, which is the one that runs.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sybil import Example, Sybil
from sybil.evaluators.python import pad
from sybil.evaluators.skip import Skipper
from sybil.parsers.markdown import CodeBlockParser, SkipParser

from trionodes.testing import ClusterPKI

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FILE_NAME = re.compile(r"#\s*([A-Za-z_][A-Za-z0-9_]*\.py)\s*$")
PART_OF = re.compile(r"#\s*part of\s+([A-Za-z_][A-Za-z0-9_]*\.py)\s*$")
PYTEST_CONFIG = "[pytest]\ntrio_mode = true\n"


def _file_name(source: str) -> str | None:
    match = FILE_NAME.match(source.split("\n", 1)[0])
    return match.group(1) if match else None


def _part_of(source: str) -> str | None:
    match = PART_OF.match(source.split("\n", 1)[0])
    return match.group(1) if match else None


def _is_test_file(source: str) -> bool:
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
        for node in ast.parse(source).body
    )


def _run(example: Example) -> None:
    source = str(example.parsed)
    whole = _part_of(source)
    if whole is not None:
        files = example.document.namespace["files"]
        assert whole in files, f"no block of this page is {whole}"
        assert source.split("\n", 1)[1] in files[whole], f"this part is not in {whole} as shown"
        return
    if _is_test_file(source):
        _run_pytest(example, source)
        return
    name = _file_name(source)
    code = compile(
        pad(source, example.line + example.parsed.line_offset),
        example.path,
        "exec",
        dont_inherit=True,
    )
    exec(code, {"__name__": name.removesuffix(".py") if name else "__main__"})


def _run_pytest(example: Example, source: str) -> None:
    name = _file_name(source) or "test_snippet.py"
    Path(name).write_text(source)
    Path("pytest.ini").write_text(PYTEST_CONFIG)
    # In this process (as pytester's runpytest_inprocess does): a subprocess would
    # spend seconds importing pytest's plugins again.
    try:
        status = pytest.main(["-q", "-p", "no:cacheprovider", "-W", "error", "-s", name])
    finally:
        _forget_modules_in(Path.cwd())
    where = f"{Path(example.path).relative_to(ROOT)}, line {example.line}"
    assert status == pytest.ExitCode.OK, f"pytest failed on the block at {where}: {status!r}"


def _forget_modules_in(directory: Path) -> None:
    """Unload the modules imported from ``directory``, so the next block's are fresh."""
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file is not None and Path(file).is_relative_to(directory):
            del sys.modules[name]


SYBIL = Sybil(parsers=[CodeBlockParser("python", evaluator=_run), SkipParser()])


def _blocks() -> Iterator[object]:
    for page in PAGES:
        document = SYBIL.parse(page)
        named: dict[str, str] = {}
        files = document.namespace["files"] = {}
        for example in document.examples():
            file_name = _file_name(str(example.parsed))
            if not isinstance(example.region.evaluator, Skipper) and file_name is not None:
                files[file_name] = str(example.parsed)
        skip: str | None = None
        for example in document.examples():
            if isinstance(example.region.evaluator, Skipper):
                action, reason = example.parsed
                assert action == "next", f"{page}: only 'skip: next' is used here"
                skip = ast.literal_eval(reason) if reason else "skipped"
                continue
            source = str(example.parsed)
            marks = [pytest.mark.skip(reason=skip)] if skip else []
            skip = None
            yield pytest.param(
                example,
                dict(named),
                id=f"{page.relative_to(ROOT)}:{example.line}",
                marks=marks,
            )
            file_name = _file_name(source)
            if file_name is not None:
                named[file_name] = source


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pki = ClusterPKI()
    (tmp_path / "ca.pem").write_bytes(pki.ca_pem)
    pki.owner.write(tmp_path / "client.pem", tmp_path / "client-key.pem")
    config = tmp_path / "config"
    pki.write_metroctl_dir(config / "metroctl")
    work = tmp_path / "work"
    work.mkdir()
    for name in ("ca.pem", "client.pem", "client-key.pem"):
        (work / name).write_bytes((tmp_path / name).read_bytes())
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    return work


@pytest.mark.parametrize(("example", "earlier_files"), list(_blocks()))
def test_block_runs(example: Example, earlier_files: dict[str, str], workdir: Path) -> None:
    for name, source in earlier_files.items():
        (workdir / name).write_text(source)
    try:
        example.evaluate()
    finally:
        _forget_modules_in(workdir)


def test_pages_have_no_site_only_syntax() -> None:
    """No include lines, and no mkdocstrings cross-references: both show as raw text."""
    for page in PAGES:
        text = page.read_text()
        assert "--8<--" not in text, f"{page.relative_to(ROOT)}: an include line"
        found = re.findall(r"\]\[[\w.]+\]", text)
        assert not found, f"{page.relative_to(ROOT)}: site-only references {found}"
