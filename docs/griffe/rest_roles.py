"""Griffe extension for this site: render the reST markup in trionodes' docstrings.

trionodes' docstrings are Google style but write cross-references as reST roles
(:class:`Follower`, :func:`open_curator`, :meth:`wait_synced`) and code examples as
reST literal blocks (a paragraph ending in ``::``). Markdown would show both as they
are, so before the docstrings are parsed this extension rewrites the roles into
optional mkdocs-autorefs cross-references (a name that is not documented on the
site stays plain code) and the literal blocks into fenced Python blocks.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

from griffe import Extension, Module, Object

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj):`([^`]+)`")


def _walk(obj: Object) -> Iterator[Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)  # type: ignore[arg-type]


class ReSTMarkup(Extension):
    """Rewrite reST roles and literal blocks in the trionodes package's docstrings."""

    def __init__(self) -> None:
        super().__init__()
        # Public names by the path they are documented under.
        self._scopes: dict[str, set[str]] = {}

    def on_package(self, *, pkg: Module, **kwargs: Any) -> None:
        if pkg.name != "trionodes":
            return
        self._scopes = {"trionodes": {str(name) for name in pkg.exports or ()}}
        testing = pkg.members.get("testing")
        if isinstance(testing, Module):
            self._scopes["trionodes.testing"] = {str(name) for name in testing.exports or ()}
        for obj in _walk(pkg):
            if obj.docstring is not None:
                text = _ROLE.sub(self._replacer(obj), obj.docstring.value)
                obj.docstring.value = _fence_literal_blocks(text)

    def _replacer(self, obj: Object) -> Any:
        return lambda match: self._reference(obj, match[1])

    def _public_path(self, name: str) -> str | None:
        first = name.split(".", 1)[0]
        for scope, names in self._scopes.items():
            if first in names:
                return f"{scope}.{name}"
        return None

    def _reference(self, obj: Object, target: str) -> str:
        target = target.lstrip("~.").removesuffix("()")
        identifier = target if target.startswith("trionodes.") else self._public_path(target)
        if identifier is None:
            # A member of the class the docstring belongs to (or is in).
            owner = obj if obj.is_class else obj.parent
            if owner is not None and owner.is_class and target in owner.members:
                scope = self._public_path(owner.name)
                identifier = f"{scope}.{target}" if scope else None
        if identifier is None:
            return f"`{target}`"
        title = f"<code>{html.escape(target)}</code>"
        return f'<autoref identifier="{identifier}" optional>{title}</autoref>'


def _fence_literal_blocks(text: str) -> str:
    """Turn ``Paragraph::`` + an indented block into ``Paragraph:`` + a fenced block."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if line.endswith("::") and line.strip() != "::":
            indent = len(line) - len(line.lstrip())
            j = i + 1
            block: list[str] = []
            while j < len(lines) and (
                not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent
            ):
                block.append(lines[j])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            while block and not block[0].strip():
                block.pop(0)
            if block:
                depth = min(len(b) - len(b.lstrip()) for b in block if b.strip())
                pad = " " * indent
                out += [line[:-1], "", f"{pad}```python"]
                out += [pad + b[depth:] if b.strip() else "" for b in block]
                out += [f"{pad}```", ""]
                i = j
                continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)
