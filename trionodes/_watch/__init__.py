"""The watch layer: tasks that read a Curator's streams and deliver what changed.

It only awaits, sleeps, logs and delivers; every protocol decision (what an event
changes, what the end of a stream means, when to retry) is made in the pure
:mod:`trionodes._core`. One module per job:

* :mod:`.cluster`: the shared NodesInCluster watch (:class:`ClusterWatch`), its
  change streams (:class:`NodeChanges`), and the functions that open them.
* :mod:`.node`: the one-node NodeInCluster watch (:class:`NodeWatch`).
* :mod:`.reconnect`: one stream after another, with backoff, logs and relists.
* :mod:`.receive`: the next event of a stream, and decoding in chunks.
* :mod:`.delivery`: from pending changes to a delivered batch, counted; the calls
  to a follower.
* :mod:`.doorbell`: how the stream task wakes a receiver's task.
"""

from .cluster import ClusterWatch, NodeChanges, open_node_changes, open_node_watch, watch_nodes
from .node import NodeWatch, watch_node

__all__ = [
    "ClusterWatch",
    "NodeChanges",
    "NodeWatch",
    "open_node_changes",
    "open_node_watch",
    "watch_node",
    "watch_nodes",
]
