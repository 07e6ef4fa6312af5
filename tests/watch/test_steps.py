"""Running the core's stepwise work in the event loop: other tasks run, and a cancel
lands, between two steps."""

from __future__ import annotations

import trio

from trionodes._core.steps import Steps
from trionodes._watch.steps import run_in_steps


async def test_other_tasks_run_between_steps_and_the_result_comes_back() -> None:
    ticks = 0
    seen: list[int] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    def work() -> Steps[str]:
        for _ in range(5):
            seen.append(ticks)
            yield
        return "done"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await trio.lowlevel.checkpoint()
        assert await run_in_steps(work()) == "done"
        nursery.cancel_scope.cancel()
    # The ticker ran while the steps went on: five steps span at least four
    # scheduling rounds, and the ticker runs once in each.
    assert seen[-1] - seen[0] >= 3


async def test_a_cancel_between_steps_closes_the_work() -> None:
    done: list[int] = []
    closed = False

    def work() -> Steps[None]:
        nonlocal closed
        try:
            for step in range(5):
                done.append(step)
                yield
        except GeneratorExit:
            closed = True
            raise

    with trio.CancelScope() as scope:
        scope.cancel()
        await run_in_steps(work())
    assert scope.cancelled_caught
    assert done == [0]
    assert closed


async def test_work_of_one_step_needs_no_checkpoint() -> None:
    def work() -> Steps[int]:
        yield from ()  # a generator, done in its first step
        return 7

    # Inside a cancelled scope: a checkpoint would raise.
    with trio.CancelScope() as scope:
        scope.cancel()
        assert await run_in_steps(work()) == 7
    assert not scope.cancelled_caught
