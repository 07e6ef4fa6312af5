"""Waiting until everything in flight has been handled, for assertions."""

from __future__ import annotations

from .._transport.bridge import wait_loops_idle


async def settle() -> None:
    """Wait until every change in flight has reached the followers (under Trio).

    Like ``trio.testing.wait_all_tasks_blocked()``, and it also waits for the
    threads the fake Curator's server and each connection run their asyncio loops
    on: call it after changing the fake, before asserting what a follower did, or
    did not, receive.
    """
    await wait_loops_idle()
