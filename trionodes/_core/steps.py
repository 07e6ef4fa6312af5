"""Work split into steps: a generator does a bounded piece of it per ``next``.

The core stays synchronous; an async caller runs such a generator one step at a
time with a checkpoint between steps (``trionodes._watch.steps``), so that a step
over the whole cluster neither stalls the event loop nor holds up a cancel. A
synchronous caller runs it to its end with :func:`run_steps`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar

T = TypeVar("T")

Steps = Generator[None, None, T]
"""Work done a bounded piece per ``next``; its result is the ``StopIteration`` value."""


def run_steps(steps: Steps[T]) -> T:
    """Do every step of ``steps`` at once and return its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result
