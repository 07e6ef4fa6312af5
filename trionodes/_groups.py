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
        leaves = list(_leaves(group))
        if len(leaves) > 1:
            # An error raised while the block was being cancelled beside it (a
            # connection lost as its watch is cancelled): the error wins. Nothing is
            # lost: cancellation is level-triggered, the next checkpoint raises it.
            cancelled = anyio.get_cancelled_exc_class()
            errors = [leaf for leaf in leaves if not isinstance(leaf, cancelled)]
            if len(errors) == 1:
                leaves = errors
        if len(leaves) != 1:
            raise
        raise leaves[0] from leaves[0].__cause__


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc
