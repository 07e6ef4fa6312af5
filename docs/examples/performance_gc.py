"""A big initial sync without the garbage collector rescanning the growing cluster."""

import gc

import trio

import trionodes
from trionodes.testing import make_node, open_fake_curator


async def main() -> None:
    async with open_fake_curator() as fake:
        fake.put(*(make_node(i) for i in range(2_000)))
        hosts: dict[str, str] = {}

        def remember(node: trionodes.Node) -> None:
            if node.status is not None:
                hosts[node.id] = node.status.external_address

        follower = trionodes.SimpleFollower(on_new_updated=remember)
        async with (
            trionodes.open_curator(fake.host, fake.port) as curator,
            trio.open_nursery() as nursery,
        ):
            # --8<-- [start:recipe]
            gc.disable()  # no collections while the initial cluster is built
            try:
                await nursery.start(trionodes.watch_nodes, curator, follower)
                # The initial nodes live long: keep them out of later collections.
                gc.freeze()
            finally:
                gc.enable()
            # --8<-- [end:recipe]
            print(f"synced: {len(hosts)} nodes, {gc.get_freeze_count()} objects frozen")
            nursery.cancel_scope.cancel()


trio.run(main, restrict_keyboard_interrupt_to_checkpoints=True)
