"""Plain asyncio: a follower in a TaskGroup task, and batches under asyncio.timeout."""

import asyncio

import trionodes
from trionodes.testing import make_node, open_fake_curator


async def main() -> None:
    async with open_fake_curator() as fake:
        fake.put(make_node(1), make_node(2))

        # --8<-- [start:follower]
        async with trionodes.open_curator(fake.host, fake.port) as curator:
            synced = asyncio.Event()
            follower = trionodes.SimpleFollower(
                on_new_updated=lambda node: print("new or updated:", node.id[-2:]),
                on_deleted=lambda node: print("deleted:", node.id[-2:]),
                on_batch_done=synced.set,  # the first one: the whole cluster is in
            )
            async with asyncio.TaskGroup() as tasks:
                watching = tasks.create_task(trionodes.watch_nodes(curator, follower))
                await synced.wait()
                synced.clear()
                fake.delete(make_node(1).id)
                await synced.wait()
                watching.cancel()  # stops the watch and its gRPC call
            # --8<-- [end:follower]

            # --8<-- [start:changes]
            async with trionodes.open_node_changes(curator) as changes:
                async with asyncio.timeout(5):  # TimeoutError if it takes longer
                    batch = await changes.receive()
                print("initial batch:", [node.id[-2:] for node in batch.new])
            # --8<-- [end:changes]


asyncio.run(main())
