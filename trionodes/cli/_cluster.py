"""The simulated cluster that ``serve`` and ``demo`` run: its nodes, and its changes."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator, Set

import trio

from trionodes import Node, NodeState
from trionodes.testing import FakeCluster, make_node

# Nodes of the simulated cluster that are Kubernetes controllers and consensus members.
_CONTROL_PLANE_NODES = 3


def demo_nodes(count: int, *, control_plane: int = _CONTROL_PLANE_NODES) -> Iterator[Node]:
    """The simulated cluster's nodes before any change.

    The first ``control_plane`` are Kubernetes controllers and consensus members (the
    first of them not a worker), the others plain workers; of a cluster larger than
    that, the last node is still NEW.

    Args:
        count: How many nodes.
        control_plane: How many of them are control-plane nodes: 0 when the fake
            control plane's members are the cluster's control plane.
    """
    for index in range(1, count + 1):
        is_control_plane = index <= control_plane
        joining = index == count and count > control_plane
        yield make_node(
            index,
            state=NodeState.NEW if joining else NodeState.UP,
            worker=not (is_control_plane and index == 1),
            controller=is_control_plane,
            consensus=is_control_plane,
        )


async def run_worker_churn(
    cluster: FakeCluster,
    *,
    changes_per_second: float,
    target_nodes: int,
    seed: int | None,
    keep: Set[str],
) -> None:
    """Keep changing a fake control plane's cluster until cancelled, sparing ``keep``.

    Like :func:`trionodes.testing.run_churn` (nodes join as NEW, come up, change
    address, leave, around ``target_nodes`` of them), but the nodes in ``keep`` (the
    members' own, whose address and Curator port clients learn endpoints from) are
    never changed or deleted, nor counted.

    Args:
        cluster: The fake control plane.
        changes_per_second: How often to make a change; more than 0.
        target_nodes: The number of other nodes to hover around.
        seed: Seeds the random choices; None for a random seed.
        keep: Node ids left alone.
    """
    rng = random.Random(seed)
    next_index = max(
        (_index(node_id) for node_id in cluster.nodes if node_id not in keep), default=0
    )
    while True:
        await trio.sleep(1 / changes_per_second)
        ids = sorted(node_id for node_id in cluster.nodes if node_id not in keep)
        roll = rng.random()
        # One change in five is a join or a leave, a join more likely below the target.
        if not ids or (roll < 0.2 and rng.random() < target_nodes / (len(ids) + target_nodes)):
            next_index += 1
            cluster.put(make_node(next_index, state=NodeState.NEW))
        elif roll < 0.2:
            cluster.delete(rng.choice(ids))
        else:
            node = cluster.nodes[rng.choice(ids)]
            if node.state is not NodeState.UP:
                cluster.put(dataclasses.replace(node, state=NodeState.UP))
            elif node.status is not None:
                address = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                status = dataclasses.replace(node.status, external_address=address)
                cluster.put(dataclasses.replace(node, status=status))


def _index(node_id: str) -> int:
    """The index :func:`~trionodes.testing.make_node` made ``node_id`` from (0 if none)."""
    try:
        return int(node_id.rsplit("-", 1)[-1], 16)
    except ValueError:
        return 0
