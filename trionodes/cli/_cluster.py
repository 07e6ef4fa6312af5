"""The simulated cluster that ``serve`` and ``demo`` run: its nodes at the start."""

from __future__ import annotations

from collections.abc import Iterator

from trionodes import Node, NodeState
from trionodes.testing import make_node

# Nodes of the simulated cluster that are Kubernetes controllers and consensus members.
_CONTROL_PLANE_NODES = 3


def demo_nodes(count: int) -> Iterator[Node]:
    """The simulated cluster's nodes before any change.

    The first three are Kubernetes controllers and consensus members (the first of
    them not a worker), the others plain workers; of a cluster larger than that, the
    last node is still NEW.

    Args:
        count: How many nodes.
    """
    for index in range(1, count + 1):
        control_plane = index <= _CONTROL_PLANE_NODES
        joining = index == count and count > _CONTROL_PLANE_NODES
        yield make_node(
            index,
            state=NodeState.NEW if joining else NodeState.UP,
            worker=index != 1,
            controller=control_plane,
            consensus=control_plane,
        )
