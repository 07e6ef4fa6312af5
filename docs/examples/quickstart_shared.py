"""Several followers on one stream, with open_node_watch."""

import trio

import trionodes
from trionodes.testing import make_node, open_fake_curator


def is_controller(node: trionodes.Node) -> bool:
    # A role is an empty message: test it with `is not None`, not for truth.
    return node.roles is not None and node.roles.kubernetes_controller is not None


def printer(name: str, **options) -> trionodes.SimpleFollower:
    return trionodes.SimpleFollower(
        on_new_updated=lambda node: print(f"{name}: new or updated {node.id[-2:]}"),
        on_deleted=lambda node: print(f"{name}: deleted {node.id[-2:]}"),
        on_batch_done=lambda: print(f"{name}: batch done"),
        **options,
    )


async def main() -> None:
    async with open_fake_curator() as fake:
        fake.put(make_node(1), make_node(2, controller=True))

        async with (
            trionodes.open_curator(fake.host, fake.port) as curator,
            trionodes.open_node_watch(curator) as watch,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(watch.follow, printer("all"))

            fake.put(make_node(3, controller=True))
            await trio.sleep(0.2)

            # A follower that joins later starts with the cluster as it is now.
            await nursery.start(watch.follow, printer("controllers", filter_fn=is_controller))
            print("the cluster now:", sorted(node_id[-2:] for node_id in watch.nodes))

            fake.delete(make_node(1).id, make_node(2).id)
            await trio.sleep(0.2)

            nursery.cancel_scope.cancel()

        print("Watch calls the Curator served:", fake.streams_opened)


trio.run(main)
