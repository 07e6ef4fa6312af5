"""Follow the nodes of a Monogon Metropolis cluster live, on Trio or asyncio.

trionodes streams node state from a cluster's Curator (``Curator.Watch``) and turns
it into calls on a :class:`Follower`, batches on a memory channel, or the states of
one node::

    async with trionodes.open_curator(host, port) as curator:
        async with trio.open_nursery() as nursery:
            await nursery.start(trionodes.watch_nodes, curator, follower)
"""

from ._core.endpoints import DEFAULT_PORT, Endpoint, EndpointError, parse_endpoint
from ._core.engine import BatchKind, NodeBatch
from ._core.retry import RetryPolicy
from ._credentials import Credentials, CredentialsError
from ._curator import Curator
from ._errors import (
    ConnectionLost,
    CuratorError,
    ProtocolError,
    StatusCode,
    TLSError,
    TrionodesError,
    WatchClosed,
)
from ._follower import Follower, SimpleFollower
from ._proto.metropolis.node.core.curator.proto.api import Node, WatchEvent, WatchRequest
from ._proto.metropolis.proto.common import NodeState
from ._stats import WatchStats
from ._tls import client_ssl_context
from ._transport import open_curator
from ._transport.cluster import Leader, find_leader, open_cluster
from ._version import __version__
from ._watch import (
    ClusterWatch,
    NodeChanges,
    NodeWatch,
    open_node_changes,
    open_node_watch,
    watch_node,
    watch_nodes,
)

__all__ = [
    "DEFAULT_PORT",
    "BatchKind",
    "ClusterWatch",
    "ConnectionLost",
    "Credentials",
    "CredentialsError",
    "Curator",
    "CuratorError",
    "Endpoint",
    "EndpointError",
    "Follower",
    "Leader",
    "Node",
    "NodeBatch",
    "NodeChanges",
    "NodeState",
    "NodeWatch",
    "ProtocolError",
    "RetryPolicy",
    "SimpleFollower",
    "StatusCode",
    "TLSError",
    "TrionodesError",
    "WatchClosed",
    "WatchEvent",
    "WatchRequest",
    "WatchStats",
    "__version__",
    "client_ssl_context",
    "find_leader",
    "open_cluster",
    "open_curator",
    "open_node_changes",
    "open_node_watch",
    "parse_endpoint",
    "watch_node",
    "watch_nodes",
]


# The messages generated from the Curator's .proto files keep their own module.
_GENERATED = "trionodes._proto"


def _fix_module_metadata() -> None:
    """Make every public name defined in a private module say it is ``trionodes.X``.

    So reprs, tracebacks and ``help()`` show the name users import (as trio does),
    not the private module it happens to live in.
    """
    for name in __all__:
        obj = globals()[name]
        module = getattr(obj, "__module__", "")
        if module.startswith("trionodes._") and not module.startswith(_GENERATED):
            obj.__module__ = "trionodes"


_fix_module_metadata()
