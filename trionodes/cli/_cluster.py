"""The simulated cluster that ``serve`` and ``demo`` start from: its nodes."""

from __future__ import annotations

from collections.abc import Iterator

from trionodes import Node, NodeState
from trionodes.testing import make_node

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
