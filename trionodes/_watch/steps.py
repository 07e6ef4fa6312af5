"""Running the core's stepwise work (:mod:`trionodes._core.steps`) in the event loop."""

from __future__ import annotations

from typing import TypeVar

import anyio.lowlevel

from .._core.steps import Steps

T = TypeVar("T")


async def run_in_steps(steps: Steps[T]) -> T:
    """Run ``steps`` to its end with a checkpoint between two steps, and return its result.

    Other tasks run between steps, and a cancel lands there: the generator is then
    closed, which the core's stepwise work takes as "abandoned, undo what was taken".
    Work done in one step costs no checkpoint at all.
    """
    try:
        while True:
            try:
                next(steps)
            except StopIteration as done:
                result: T = done.value
                return result
            await anyio.lowlevel.checkpoint()
    finally:
        steps.close()
