"""Trio: wait for the cluster to reach a state, with a timeout, beside other work."""

import trio

import trionodes
from trionodes.testing import make_node, open_fake_curator

NodeState = trionodes.NodeState


def is_up(node: trionodes.Node) -> bool:
    return node.state is NodeState.UP


# --8<-- [start:wait]
async def wait_until_up(curator: trionodes.Curator, count: int) -> list[str]:
    """Return the ids of the UP nodes as soon as there are at least ``count``."""
    async with trionodes.open_node_changes(curator, filter=is_up) as changes:
        while True:
            batch = await changes.receive()
            if len(batch.view) >= count:
                return sorted(batch.view)


# --8<-- [end:wait]


async def main() -> None:
    async with open_fake_curator() as fake:
        fake.put(make_node(1), make_node(2, state=NodeState.NEW), make_node(3, state=NodeState.NEW))

        async def bring_nodes_up() -> None:  # what the cluster does meanwhile
            for index in (2, 3):
                await trio.sleep(0.1)
                fake.put(make_node(index))

        # --8<-- [start:main]
        async with (
            trionodes.open_curator(fake.host, fake.port) as curator,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(bring_nodes_up)
            with trio.fail_after(5):  # TooSlowError if it takes longer
                up = await wait_until_up(curator, 3)
            print("three nodes UP:", [node_id[-2:] for node_id in up])

            with trio.move_on_after(0.5) as scope:  # give up quietly instead
                await wait_until_up(curator, 4)
            print("a fourth node within 0.5 s:", not scope.cancelled_caught)
        # --8<-- [end:main]


# --8<-- [start:run]
trio.run(main, restrict_keyboard_interrupt_to_checkpoints=True)
# --8<-- [end:run]
