"""The sans-I/O core (``trionodes._core``) does no I/O and imports no async or gRPC library.

Two kinds of check, over every module of ``trionodes/_core``:

* Static: each module's source (and that of the hand-written trionodes modules it
  imports) is parsed with :mod:`ast`; no ``import`` or ``from ... import`` anywhere in
  it, even inside a function or an ``if TYPE_CHECKING`` block, names an async or gRPC
  package.
* At run time, in a fresh interpreter. A plain ``import trionodes._core.engine`` runs
  ``trionodes/__init__.py`` first, which imports the transport and the watches and
  so every one of those packages: looking at ``sys.modules`` afterwards says
  nothing about the core. So the runtime checks are:

  - the module's own namespace, after that ordinary import, holds no module, class
    or function that comes from those packages;
  - the module is loaded *alone*, under a bare ``trionodes`` package object that
    skips ``__init__.py``: then none of the packages is loaded at all, the generated
    message classes the engine takes ``Node`` from included (they are generated
    without gRPC stubs for this reason).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import trionodes

FORBIDDEN = frozenset({"trio", "anyio", "asyncio", "grpclib", "h2", "trio_asyncio", "sniffio"})
PACKAGE_DIR = Path(trionodes.__file__).resolve().parent
CORE_DIR = PACKAGE_DIR / "_core"
PURE_MODULES = tuple(
    sorted(f"_core.{path.stem}" for path in CORE_DIR.glob("*.py") if path.stem != "__init__")
)
# The generated module the engine takes Node from.
NODE_MODULE = "trionodes._proto.metropolis.node.core.curator.proto.api"


def module_path(name: str) -> Path:
    """The source file of the trionodes module ``name`` (``trionodes.`` optional)."""
    parts = name.removeprefix("trionodes.").split(".")
    return PACKAGE_DIR.joinpath(*parts).with_suffix(".py")


def imported_modules(path: Path, package: str) -> set[str]:
    """Every module an ``import`` statement anywhere in ``path`` names, made absolute.

    Args:
        path: A module of ``package``.
        package: The package the module belongs to, to resolve relative imports.

    Returns:
        For ``import a.b`` the name ``a.b``; for ``from a import b`` the name ``a``
        and also ``a.b`` (which may be a submodule); relative names made absolute.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                assert node.module is not None
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def dynamic_imports(path: Path) -> list[str]:
    """Calls that could import a module behind the static check's back."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in {"__import__", "import_module", "exec", "eval"}:
                found.append(f"{path.name}:{node.lineno}: {name}()")
    return found


def forbidden(names: set[str]) -> list[str]:
    return sorted(name for name in names if name.split(".")[0] in FORBIDDEN)


def hand_written_closure(start: str) -> dict[str, set[str]]:
    """The hand-written trionodes modules ``start`` imports, transitively, and theirs.

    Generated code (``trionodes._proto``) is left out: it is not hand-written, and
    what it loads is checked at run time instead.
    """
    seen: dict[str, set[str]] = {}
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        package = name.rpartition(".")[0]
        seen[name] = imported_modules(module_path(name), package)
        for other in seen[name]:
            parts = other.split(".")
            if parts[0] != "trionodes" or len(parts) < 2 or parts[1] == "_proto":
                continue
            # ``from .wire import RawEvent`` names trionodes._core.wire.RawEvent too.
            for length in (2, 3):
                candidate = ".".join(parts[:length])
                if len(parts) >= length and module_path(candidate).is_file():
                    todo.append(candidate)
    return seen


@pytest.mark.parametrize("module", PURE_MODULES)
def test_source_imports_no_async_or_grpc_package(module: str) -> None:
    path = module_path(module)
    assert forbidden(imported_modules(path, "trionodes._core")) == []
    assert dynamic_imports(path) == []


@pytest.mark.parametrize("module", PURE_MODULES)
def test_hand_written_dependencies_import_none_either(module: str) -> None:
    closure = hand_written_closure(f"trionodes.{module}")
    assert f"trionodes.{module}" in closure
    # The engine's dependencies are small and known; a new one deserves a look.
    # The core's dependencies are small and known; a new one deserves a look.
    assert set(closure) <= {f"trionodes.{name}" for name in PURE_MODULES} | {"trionodes._errors"}
    for name, imports in closure.items():
        assert forbidden(imports) == [], name
        assert dynamic_imports(module_path(name)) == []


def test_engine_takes_only_message_classes_from_generated_code() -> None:
    imports = imported_modules(module_path("_core.engine"), "trionodes._core")
    generated = {name for name in imports if name.startswith("trionodes._proto")}
    assert generated == {NODE_MODULE, f"{NODE_MODULE}.Node"}


def test_static_check_catches_forbidden_imports(tmp_path: Path) -> None:
    # The checker itself: every import form is seen, however it is nested.
    source = tmp_path / "sample.py"
    source.write_text(
        "from __future__ import annotations\n"
        "import os, trio.lowlevel\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from anyio.abc import TaskStatus\n"
        "def f() -> None:\n"
        "    import sniffio\n"
        "    from grpclib import client\n"
        "class C:\n"
        "    from asyncio import sleep\n"
        "try:\n"
        "    import trio_asyncio as ta\n"
        "except ImportError:\n"
        "    pass\n"
        "from . import _wire\n"
        "from .._x import y\n"
        "__import__('anyio')\n",
        encoding="utf-8",
    )
    names = imported_modules(source, "pkg.sub")
    assert forbidden(names) == [
        "anyio.abc",
        "anyio.abc.TaskStatus",
        "asyncio",
        "asyncio.sleep",
        "grpclib",
        "grpclib.client",
        "sniffio",
        "trio.lowlevel",
        "trio_asyncio",
    ]
    assert {"pkg.sub", "pkg.sub._wire", "pkg._x", "pkg._x.y"} <= names
    assert dynamic_imports(source) == ["sample.py:17: __import__()"]


# --- At run time, in a fresh interpreter --------------------------------------------------

_PROBE = """
import importlib, importlib.util, json, sys, types

root, forbidden, mode, module = sys.argv[1:5]
forbidden = set(json.loads(forbidden))
sys.path.insert(0, root)

def loaded():
    return sorted(m for m in sys.modules if m.split(".")[0] in forbidden)

result = {"startup": loaded()}
if mode == "alone":
    # A bare package object: submodules load from its directory, __init__.py never runs.
    spec = importlib.util.find_spec("trionodes")
    package = types.ModuleType("trionodes")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["trionodes"] = package
    importlib.import_module("trionodes." + module)
    result["after"] = loaded()
    result["package_ran"] = any(
        name in sys.modules for name in ("trionodes._watch", "trionodes._transport")
    )
else:
    mod = importlib.import_module("trionodes." + module)
    bad = []
    for name, value in vars(mod).items():
        if isinstance(value, types.ModuleType):
            origin = value.__name__
        else:
            origin = getattr(value, "__module__", None)
            if not isinstance(origin, str) or isinstance(value, (str, int, float, bytes)):
                continue
        if origin.split(".")[0] in forbidden:
            bad.append(f"{name} from {origin}")
    result["bad"] = bad
    result["after"] = loaded()
print(json.dumps(result))
"""


def probe(mode: str, module: str) -> dict[str, object]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _PROBE,
            str(PACKAGE_DIR.parent),
            json.dumps(sorted(FORBIDDEN)),
            mode,
            module,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert isinstance(result, dict)
    assert result["startup"] == [], "a fresh interpreter starts with none of them loaded"
    return result


@pytest.mark.parametrize("module", PURE_MODULES)
def test_namespace_holds_nothing_from_async_or_grpc_packages(module: str) -> None:
    # An ordinary import: the package __init__ loads the transport and so every one
    # of the packages, but the module itself must hold no reference to them.
    result = probe("package", module)
    assert result["bad"] == []


@pytest.mark.parametrize("module", PURE_MODULES)
def test_module_alone_loads_no_async_or_grpc_package(module: str) -> None:
    result = probe("alone", module)
    assert result["package_ran"] is False
    assert result["after"] == []


def test_generated_message_classes_alone_load_none_either() -> None:
    # The engine's Node: generated without gRPC stubs, so no grpclib or asyncio.
    result = probe("alone", NODE_MODULE.removeprefix("trionodes."))
    assert result["after"] == []


def test_every_core_module_is_checked() -> None:
    assert {"_core.engine", "_core.wire", "_core.decode", "_core.retry"} <= set(PURE_MODULES)
    assert "_core.stream" in PURE_MODULES
