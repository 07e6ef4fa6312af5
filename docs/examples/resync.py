"""A watch across an outage: one RESYNC batch with only what changed meanwhile."""

import logging

import trio

import trionodes
from trionodes import NodeState, StatusCode
from trionodes.testing import make_node, open_fake_curator

# --8<-- [start:logging]
# One line per fault, with its cause and the wait before the next try.
logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
# --8<-- [end:logging]


def short(node: trionodes.Node) -> str:
    return f"{node.id[-1]}:{node.state.name}"


async def main() -> None:
    async with open_fake_curator() as fake:
        fake.put(*(make_node(i) for i in range(1, 4)))
        async with trionodes.open_curator(fake.host, fake.port) as curator:
            # --8<-- [start:policy]
            retry = trionodes.RetryPolicy(initial_delay=0.1, max_delay=10.0)
            async with (
                trionodes.open_node_watch(curator, retry=retry) as watch,
                watch.open_changes() as changes,
            ):
                batch = await changes.receive()
                print(batch.kind.name, *map(short, batch.new))
                # --8<-- [end:policy]

                # The Curator loses its leader; while the watch reconnects, node 1
                # changes, node 2 goes and node 4 comes. Node 3 stays as it was.
                fake.fail_streams(StatusCode.UNAVAILABLE, "leader lost")
                fake.put(make_node(1, state=NodeState.DECOMMISSIONED), make_node(4))
                fake.delete(make_node(2).id)

                batch = await changes.receive()
                print(batch.kind.name, "new", *map(short, batch.new))
                print(batch.kind.name, "updated", *(short(new) for _, new in batch.updated))
                print(batch.kind.name, "deleted", *map(short, batch.deleted))
                # --8<-- [start:stats]
                stats = watch.stats
                print(f"events {stats.events_received}, reconnects {stats.reconnects},")
                print(f"synced {stats.synced}, last error: {stats.last_error}")
                # --8<-- [end:stats]


trio.run(main, restrict_keyboard_interrupt_to_checkpoints=True)
