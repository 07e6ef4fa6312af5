"""Receive the cluster's changes as batches with open_node_changes."""

import trio

import trionodes
from trionodes.testing import make_node, open_fake_curator

NodeState = trionodes.NodeState


def short(node: trionodes.Node) -> str:
    return node.id[-2:]  # the fake Curator's node ids end in the node's index


def describe(batch: trionodes.NodeBatch) -> str:
    new = [short(node) for node in batch.new]
    updated = [f"{short(b)}: {a.state.name} -> {b.state.name}" for a, b in batch.updated]
    deleted = [short(node) for node in batch.deleted]
    return f"{batch.kind.name}: new {new}, updated {updated}, deleted {deleted}"


async def main() -> None:
    async with open_fake_curator() as fake:
        fake.put(make_node(1), make_node(2), make_node(3))

        async with (
            trionodes.open_curator(fake.host, fake.port) as curator,
            trionodes.open_node_changes(curator) as changes,
        ):
            async for batch in changes:
                print(describe(batch))
                print("  nodes in the view:", len(batch.view))
                if batch.initial:
                    # Changes made while we are busy are merged: the next batch
                    # holds the latest state of each node that changed.
                    fake.put(make_node(1, state=NodeState.STANDBY))
                    fake.put(make_node(1, state=NodeState.DECOMMISSIONED))
                    fake.change(put=[make_node(4)], delete=[make_node(2).id])
                    await trio.sleep(0.2)  # busy with something else
                elif batch.view[make_node(1).id].state is not NodeState.UP:
                    fake.put(make_node(1))  # node 1 comes back up
                else:
                    break  # leaving the block cancels the watch


trio.run(main)
