"""The version of trionodes, for ``trionodes.__version__`` and ``trionodes --version``.

An installed trionodes (also an editable install) knows its version from its
package metadata. A source checkout imported without installing it (``PYTHONPATH``
pointing at the checkout) has no metadata, or worse, the metadata of another
trionodes installed elsewhere: so the checkout's own ``pyproject.toml``, when there
is one beside the package, wins. Failing both, the version is ``0+unknown``, a valid
version that sorts before every release.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

__all__ = ["__version__"]

UNKNOWN_VERSION = "0+unknown"

_DISTRIBUTION = "trionodes"


def _checkout_version(pyproject: Path) -> str | None:
    """The version in a checkout's ``pyproject.toml``, if it is trionodes's own."""
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    version = project.get("version")
    if project.get("name") != _DISTRIBUTION or not isinstance(version, str):
        return None
    return version


def find_version(package_dir: Path = Path(__file__).parent) -> str:
    """The version of the trionodes whose package directory is ``package_dir``.

    The ``pyproject.toml`` of a source checkout holding it first, then the installed
    package metadata, then :data:`UNKNOWN_VERSION`.
    """
    from_checkout = _checkout_version(package_dir.parent / "pyproject.toml")
    if from_checkout is not None:
        return from_checkout
    try:
        return importlib.metadata.version(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


__version__ = find_version()
