"""sole_exception: callers get the one error a task group raised, as itself."""

from __future__ import annotations

import anyio
import pytest
import trio
import trio.testing

from trionodes._groups import sole_exception


async def fail(error: Exception) -> None:
    raise error


async def fail_in_a_task_group(*errors: Exception) -> None:
    with sole_exception():
        async with anyio.create_task_group() as tasks:
            for error in errors:
                tasks.start_soon(fail, error)


async def test_the_one_error_comes_out_as_itself() -> None:
    with pytest.raises(KeyError):
        await fail_in_a_task_group(KeyError("lost"))


async def test_several_errors_stay_a_group() -> None:
    with pytest.raises(ExceptionGroup):
        await fail_in_a_task_group(KeyError("a"), ValueError("b"))


async def fail_while_cancelled(outer: trio.CancelScope) -> None:
    # A child task gets Cancelled, the block its own error.
    with sole_exception():
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(trio.sleep_forever)
            await trio.testing.wait_all_tasks_blocked()
            outer.cancel()
            raise ConnectionError("dropped")


async def test_an_error_raised_while_cancelled_beside_it_wins_over_the_cancellation() -> None:
    with trio.CancelScope() as outer:
        with pytest.raises(ConnectionError):
            await fail_while_cancelled(outer)
        # Cancellation is level-triggered: the next checkpoint still sees it.
        with pytest.raises(trio.Cancelled):
            await trio.lowlevel.checkpoint()
