"""Unwrapping the exception groups that task groups add."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anyio


@contextlib.contextmanager
def sole_exception() -> Iterator[None]:
    """Raise the one exception inside nested exception groups as itself.

    Task groups wrap every exception in a group; trionodes promises callers the
    original exception. A group holding several errors is left as it is.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        found = list(leaves(group))
        if len(found) > 1:
            # An error raised while the block was being cancelled beside it (a
            # connection lost as its watch is cancelled): the error wins. Nothing is
            # lost: cancellation is level-triggered, the next checkpoint raises it.
            cancelled = anyio.get_cancelled_exc_class()
            errors = [leaf for leaf in found if not isinstance(leaf, cancelled)]
            if len(errors) == 1:
                found = errors
        if len(found) != 1:
            raise
        raise found[0] from found[0].__cause__


def leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    """The exceptions in ``group`` and in the groups nested in it, in order."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from leaves(exc)
        else:
            yield exc
