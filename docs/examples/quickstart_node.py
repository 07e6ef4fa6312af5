"""Follow one node with watch_node, from before it exists until it is deleted."""

import trio

import trionodes
from trionodes.testing import make_node, open_fake_curator

NodeState = trionodes.NodeState


async def main() -> None:
    async with open_fake_curator() as fake:
        node_id = make_node(7).id  # not in the cluster yet

        async with (
            trionodes.open_curator(fake.host, fake.port) as curator,
            trionodes.watch_node(curator, node_id) as watcher,
        ):
            print("before it exists:", watcher.node)
            fake.put(make_node(7, state=NodeState.NEW))  # the node joins

            async for node in watcher:
                print("state:", node.state.name)
                if node.state is NodeState.NEW:
                    fake.put(make_node(7, state=NodeState.STANDBY))
                elif node.state is NodeState.STANDBY:
                    fake.put(make_node(7, state=NodeState.UP))
                else:
                    fake.delete(node_id)
            # The iteration ended: the node was deleted.
            print("deleted:", watcher.deleted, "- last state:", watcher.node.state.name)


trio.run(main)
