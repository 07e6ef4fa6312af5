"""The fake Curator's simulated churn."""

from __future__ import annotations

import trio

from trionodes.testing import FakeCurator, make_node, run_churn


async def test_churn_joins_leaves_and_keeps_roles(autojump_clock: trio.abc.Clock) -> None:
    fake = FakeCurator()  # not serving: only its cluster is used
    founders = {make_node(i).id for i in range(1, 5)}
    fake.put(*(make_node(i, controller=True) for i in range(1, 5)))
    seen = set(fake.nodes)
    sizes = set()
    with trio.move_on_after(200):  # virtual seconds: 1,000 changes
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: run_churn(fake, changes_per_second=5, target_nodes=4, seed=3)
            )
            while True:
                await trio.sleep(0.2)
                seen |= set(fake.nodes)
                sizes.add(len(fake.nodes))
                for node_id in founders & set(fake.nodes):
                    roles = fake.nodes[node_id].roles
                    assert roles is not None
                    assert roles.kubernetes_controller is not None
    assert len(seen) > 20  # nodes kept joining
    assert founders - set(fake.nodes)  # and leaving
    assert max(sizes) <= 12  # hovering around the target
