"""Test a follower against the in-memory curator, in virtual time, with pytest-trio.

Run it with ``pytest docs/examples/howto_testing_memory.py`` (or as a script). The
follower under test is the one of ``howto_testing.py``, next to this file.
"""

import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from howto_testing import UpAddresses

import trionodes
from trionodes.testing import MemoryCurator, make_node, open_memory_curator, settle


# --8<-- [start:fixture]
@pytest.fixture
async def memory() -> AsyncIterator[MemoryCurator]:
    async with open_memory_curator(backlog_nodes_per_event=2) as memory:
        yield memory


# --8<-- [end:fixture]


# --8<-- [start:tests]
@pytest.mark.trio
async def test_publishes_each_change(
    memory: MemoryCurator, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    memory.put(make_node(1))
    follower = UpAddresses()
    await nursery.start(trionodes.watch_nodes, memory.curator, follower)
    memory.put(make_node(2))
    await settle()
    assert follower.published[-1] == {make_node(1).id: "10.0.0.1", make_node(2).id: "10.0.0.2"}


@pytest.mark.trio
async def test_waits_out_a_stalled_curator_in_no_time(
    memory: MemoryCurator, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    memory.put(*(make_node(i) for i in range(1, 5)))
    memory.stall(after_messages=1)  # each call stops after its first backlog event
    follower = UpAddresses()
    nursery.start_soon(trionodes.watch_nodes, memory.curator, follower)
    # Two of the default 60 s backlog timeouts, each followed by a reconnect: in
    # virtual time, so the test takes milliseconds.
    await trio.sleep(150)
    assert follower.published == []
    memory.resume()
    await settle()
    assert len(follower.published[0]) == 4


# --8<-- [end:tests]


if __name__ == "__main__":
    command = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", __file__]
    raise SystemExit(subprocess.call(command))
