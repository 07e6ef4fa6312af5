"""Follow the nodes of a cluster with a SimpleFollower (here: a fake Curator)."""

import trio

import trionodes
from trionodes.testing import make_node, open_fake_curator


def address(node: trionodes.Node) -> str:
    return node.status.external_address if node.status else "?"


async def main() -> None:
    async with open_fake_curator() as fake:
        # A cluster of three nodes; node 3 has not joined yet.
        fake.put(make_node(1), make_node(2), make_node(3, state=trionodes.NodeState.NEW))

        hosts: dict[str, str] = {}  # node id -> address, for nodes that are UP

        def on_new_updated(node: trionodes.Node) -> None:
            print("  new or updated:", node.id, address(node))
            hosts[node.id] = address(node)

        def on_deleted(node: trionodes.Node) -> None:
            print("  deleted:       ", node.id)
            del hosts[node.id]

        async def on_batch_done() -> None:  # callbacks may be async
            print("  batch done:", sorted(hosts.values()))

        follower = trionodes.SimpleFollower(
            filter_fn=lambda node: node.state is trionodes.NodeState.UP,
            on_new_updated=on_new_updated,
            on_deleted=on_deleted,
            on_batch_done=on_batch_done,
        )

        async with (
            trionodes.open_curator(fake.host, fake.port) as curator,
            trio.open_nursery() as nursery,
        ):
            print("initial cluster:")
            await nursery.start(trionodes.watch_nodes, curator, follower)
            # start() has returned: the follower has seen the whole cluster.

            print("node 3 comes up, node 1 moves:")
            fake.put(make_node(3), make_node(1, address="10.9.9.9"))
            await trio.sleep(0.2)

            print("node 2 is deleted:")
            fake.delete(make_node(2).id)
            await trio.sleep(0.2)

            nursery.cancel_scope.cancel()  # stops the watch and its gRPC call

        await fake.wait_idle()
        print("streams cancelled on the server:", fake.streams_cancelled)


trio.run(main)
