"""The same on asyncio, through anyio (the code runs unchanged on Trio too)."""

import anyio

import trionodes
from trionodes.testing import make_node, open_fake_curator


async def main() -> None:
    async with open_fake_curator() as fake:
        fake.put(make_node(1), make_node(2))

        follower = trionodes.SimpleFollower(
            on_new_updated=lambda node: print("new or updated:", node.id),
            on_deleted=lambda node: print("deleted:", node.id),
            on_batch_done=lambda: print("batch done"),
        )

        async with (
            trionodes.open_curator(fake.host, fake.port) as curator,
            anyio.create_task_group() as tasks,
        ):
            # Returns once the follower has seen the whole cluster.
            await tasks.start(trionodes.watch_nodes, curator, follower)

            fake.delete(make_node(1).id)
            await anyio.sleep(0.2)

            tasks.cancel_scope.cancel()


anyio.run(main, backend="asyncio")  # or backend="trio"; asyncio.run(main()) works too
