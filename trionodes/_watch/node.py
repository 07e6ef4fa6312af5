"""The one-node watch: a NodeInCluster stream, and the states of one node it yields.

The pure :class:`~trionodes._core.engine.NodeTracker` follows the node through the
stream's events. A resumed watch (after a fault, or for a relist) first looks the
node up in a NodesInCluster backlog: a NodeInCluster stream would wait in silence
for a node deleted while nobody was listening.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import final

from .._core.engine import BacklogLookup, NodeTracker, decode_node
from .._core.retry import RetryPolicy
from .._core.wire import RawEvent
from .._curator import Curator
from .._proto.metropolis.node.core.curator.proto.api import (
    Node,
    WatchRequest,
    WatchRequestNodeInCluster,
    WatchRequestNodesInCluster,
)
from .._stats import Counters, WatchStats
from .delivery import Delivery
from .receive import receive_event
from .reconnect import DEFAULT_RETRY, Reconnector


@final
class NodeWatch:
    """Follows one node; made by :func:`watch_node`.

    Iterating yields each new state of the node (the latest one when the consumer is
    slower than the changes). When the node is deleted the iteration ends and
    :attr:`deleted` is true. Once the block of :func:`watch_node` has ended,
    iterating raises :class:`WatchClosed`; the properties stay readable.
    """

    _curator: Curator
    _tracker: NodeTracker
    _counters: Counters
    _reconnector: Reconnector
    _delivery: Delivery[Node]
    _yielded: Node | None

    def __init__(self) -> None:
        raise TypeError("NodeWatch objects are made by trionodes.watch_node")

    @classmethod
    def _open(
        cls, curator: Curator, node_id: str, retry: RetryPolicy, relist: float | None
    ) -> NodeWatch:
        self = object.__new__(cls)
        self._curator = curator
        self._tracker = NodeTracker(node_id)
        self._counters = Counters()
        self._reconnector = Reconnector(
            retry,
            relist,
            self._counters,
            lambda: f"watch of node {node_id} at {curator._where}",
        )
        self._delivery = Delivery(self._take_state, self._counters)
        # The state last yielded: a state is yielded once, however often it is seen.
        self._yielded = None
        return self

    def __repr__(self) -> str:
        state = "deleted" if self.deleted else "seen" if self.node is not None else "not seen"
        return (
            f"<trionodes.NodeWatch of {self.node_id} on "
            f"{self._curator.host}:{self._curator.port}, {state}>"
        )

    @property
    def node_id(self) -> str:
        """The id of the node followed."""
        return self._tracker.node_id

    @property
    def node(self) -> Node | None:
        """The node's latest state, or None until it has been seen."""
        return self._tracker.node

    @property
    def deleted(self) -> bool:
        """Whether the node has been deleted."""
        return self._tracker.deleted

    @property
    def stats(self) -> WatchStats:
        """This watch's counters and state, as they are now.

        ``synced`` means the current stream has confirmed the node's state: it sent
        the node, or a resumed watch found it in the cluster.
        """
        return self._counters.snapshot()

    def __aiter__(self) -> NodeWatch:
        return self

    async def __anext__(self) -> Node:
        """The node's next state: the latest, when several came since the last.

        Raises:
            StopAsyncIteration: The node has been deleted.
            WatchClosed: The block of :func:`watch_node` has ended.
        """
        return await self._delivery.next()

    async def _take_state(self) -> Node | None:
        tracker = self._tracker
        if tracker.deleted:
            raise StopAsyncIteration
        node = tracker.node
        if node is None or node is self._yielded:
            return None
        self._yielded = node
        return node

    def _apply(self, source: RawEvent | BacklogLookup) -> None:
        tracker = self._tracker
        pending = tracker.to_decode(source)
        decoded = None if pending is None else decode_node(pending)
        if tracker.apply(source, decoded):
            self._delivery.ring()

    async def _follow_stream(self) -> None:
        """Follow the node on one stream until it is deleted, or its relist is due."""
        tracker = self._tracker
        reconnector = self._reconnector
        request = WatchRequest(node_in_cluster=WatchRequestNodeInCluster(node_id=self.node_id))
        async with self._curator._open_stream(request) as stream:
            with reconnector.until_relist():
                # Resuming a node seen before: a NodeInCluster stream waits in silence
                # for a node deleted during the outage, so look for it in the whole
                # cluster. The stream is opened first: a deletion after the lookup then
                # reaches it.
                if tracker.node is not None:
                    self._apply(await self._look_up())
                    reconnector.synced()
                while not tracker.deleted:
                    # NodeInCluster has no backlog to speak of: any end is a lost stream.
                    event = await receive_event(stream, in_backlog=False)
                    reconnector.received()
                    self._apply(event)
                    if not self._counters.synced and tracker.node is not None:
                        reconnector.synced()
        # Deleted: the stream would stay open and idle forever, so it is closed.

    async def _look_up(self) -> BacklogLookup:
        """The node's state in a NodesInCluster backlog, for the tracker.

        Only the ids of the backlog's nodes are read; nothing else is decoded.
        """
        lookup = BacklogLookup(self.node_id)
        backlog_timeout = self._reconnector.policy.backlog_timeout
        request = WatchRequest(nodes_in_cluster=WatchRequestNodesInCluster())
        async with self._curator._open_stream(request) as stream:
            while True:
                event = await receive_event(
                    stream, in_backlog=True, backlog_timeout=backlog_timeout
                )
                if lookup.feed(event):
                    return lookup

    def _close(self, error: BaseException | None) -> None:
        self._delivery.close("this watch has ended", error)


@contextlib.asynccontextmanager
async def watch_node(
    curator: Curator,
    node_id: str,
    *,
    retry: RetryPolicy | None = None,
    relist: float | None = 3600.0,
) -> AsyncIterator[NodeWatch]:
    """Follow one node (a NodeInCluster watch).

    Example::

        async with trionodes.watch_node(curator, node_id) as watch:
            async for node in watch:
                print(node.roles)
            assert watch.deleted

    If the node does not exist yet, the watch waits for it. Nodes with other ids in
    the stream are dropped. After a fault that retrying can fix the watch reconnects
    (see :func:`open_node_watch`): an unchanged node is not yielded again, and a
    node deleted during the outage still ends the iteration with :attr:`deleted`
    set, found by looking the node up in the cluster's backlog.

    A Curator can also lose the deletion of the node on a healthy stream (see
    :func:`open_node_watch`). So, as the cluster watches do, every ``relist``
    seconds after the node was confirmed the watch starts over as after a fault:
    it looks the node up in a fresh backlog (reading only ids, decoding nothing but
    a changed node) and yields nothing unless the node changed or went. On by
    default, once an hour, for the same reason: a node that is gone but still
    followed is a wrong answer nothing else would correct.

    Args:
        curator: The connection, from :func:`open_curator`.
        node_id: The node to follow.
        retry: When and how to reconnect after a fault; None for the defaults
            (see :class:`RetryPolicy`).
        relist: Seconds from the node's confirmation on a stream to the next
            lookup; None never looks again while the stream lasts.

    Yields:
        The watch, an async iterator of the node's states. After the block,
        iterating it raises :class:`WatchClosed`.

    Raises:
        CuratorError: The Curator refused the call with a status that retrying
            cannot fix.
        TLSError: TLS failed in a way that retrying cannot fix.
        ValueError: ``relist`` is not a positive number of seconds or None.
    """
    watch = NodeWatch._open(curator, node_id, retry or DEFAULT_RETRY, relist)
    async with watch._reconnector.running(watch._follow_stream, watch._close):
        yield watch
