"""Watches: the tasks that read a Curator's stream and feed followers.

The stream task splits each message, decodes only what changed (in chunks, so a
large backlog does not freeze the event loop), applies it to the pure engine and
marks every follower's pending changes. Each follower runs in its own task and takes a
batch whenever it is ready: a slow follower never holds up the stream or another
follower, and its pending changes collapse per node, so memory stays bounded by the
number of nodes, not the number of events.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import NoReturn

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.abc import ObjectReceiveStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._engine import (
    Cluster,
    ClusterDelta,
    FollowerView,
    NodeBatch,
    NodeEquals,
    NodeFilter,
    NodeTracker,
    decode_node,
    decode_nodes,
)
from ._errors import ConnectionLost, ProtocolError, WatchClosed
from ._follower import Follower, deliver
from ._groups import sole_exception
from ._proto.metropolis.node.core.curator.proto.api import (
    Node,
    WatchRequest,
    WatchRequestNodeInCluster,
    WatchRequestNodesInCluster,
)
from ._transport import Curator, MessageStream
from ._wire import RawEvent, split_watch_event

# Nodes decoded between two checkpoints (about 20 ms of decoding).
_DECODE_CHUNK = 200


async def _receive_event(stream: MessageStream) -> RawEvent:
    return split_watch_event(await stream.receive())


async def _decode(pending: list[bytes]) -> dict[bytes, Node]:
    if len(pending) <= _DECODE_CHUNK:
        return decode_nodes(pending)
    decoded: dict[bytes, Node] = {}
    for start in range(0, len(pending), _DECODE_CHUNK):
        decoded.update(decode_nodes(pending[start : start + _DECODE_CHUNK]))
        await anyio.lowlevel.checkpoint()
    return decoded


class _Doorbell:
    """Wakes one waiting task; rings while nobody waits are remembered (once)."""

    def __init__(self) -> None:
        send: MemoryObjectSendStream[None]
        receive: MemoryObjectReceiveStream[None]
        send, receive = anyio.create_memory_object_stream[None](1)
        self._send = send
        self._receive = receive

    def ring(self) -> None:
        with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
            self._send.send_nowait(None)

    async def wait(self) -> None:
        """Wait for a ring.

        Raises:
            anyio.EndOfStream: The doorbell was closed.
        """
        await self._receive.receive()

    def close(self) -> None:
        """Make waiting (now or later) raise ``anyio.EndOfStream``."""
        self._send.close()

    def release(self) -> None:
        """Free both ends; the waiting side is gone."""
        self._send.close()
        self._receive.close()


class _Subscription:
    def __init__(self, view: FollowerView) -> None:
        self.view = view
        self.doorbell = _Doorbell()


class NodeChanges(ObjectReceiveStream[NodeBatch]):
    """The receiving end of one view's batches; see :func:`open_node_changes`.

    An anyio object receive stream: ``await changes.receive()`` or
    ``async for batch in changes``. Each batch is diffed when it is asked for.
    """

    def __init__(self, watch: NodeWatch, subscription: _Subscription) -> None:
        self._watch = watch
        self._subscription = subscription
        self._closed = False

    async def receive(self) -> NodeBatch:
        """Wait for the next batch with at least one change (or the initial one).

        Raises:
            WatchClosed: The watch ended (its error, if any, is the cause).
            anyio.ClosedResourceError: This stream was closed.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        while True:
            batch = await self._watch._next_batch(self._subscription)
            if batch is not None:
                return batch

    async def aclose(self) -> None:
        """Stop receiving; the watch forgets this view."""
        if not self._closed:
            self._closed = True
            self._watch._unsubscribe(self._subscription)
        await anyio.lowlevel.checkpoint()


class NodeWatch:
    """One NodesInCluster stream shared by any number of followers.

    Make one with :func:`open_node_watch`.
    """

    def __init__(self, curator: Curator) -> None:
        self._curator = curator
        self._cluster = Cluster()
        self._subscriptions: set[_Subscription] = set()
        self._synced = anyio.Event()
        self._closed = False
        self._error: BaseException | None = None

    @property
    def nodes(self) -> Mapping[str, Node]:
        """The whole cluster as last committed: an immutable snapshot, node id to node.

        Empty until the initial backlog is in (see :meth:`wait_synced`).
        """
        return self._cluster.nodes

    async def wait_synced(self) -> None:
        """Return once the initial backlog has been received and applied."""
        await self._synced.wait()

    async def follow(
        self,
        follower: Follower,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> NoReturn:
        """Feed ``follower`` from this watch until cancelled.

        Use it as ``await nursery.start(watch.follow, follower)``: that returns once
        the follower has handled its initial batch (the whole cluster as it is when
        the follower joins, ending in one ``batch_done``). A follower may join at any
        time; leaving (cancelling this task) affects no other follower.

        Raises:
            Exception: Whatever a follower callback raised.
            WatchClosed: The watch ended (its error, if any, is the cause).
        """
        subscription = self._subscribe(FollowerView(follower.filter, follower.equals))
        try:
            while True:
                batch = await self._next_batch(subscription)
                if batch is not None:
                    await deliver(follower, batch)
                    if batch.initial:
                        task_status.started()
        finally:
            self._unsubscribe(subscription)

    @contextlib.asynccontextmanager
    async def open_changes(
        self, filter: NodeFilter | None = None, equals: NodeEquals | None = None
    ) -> AsyncIterator[NodeChanges]:
        """Receive this watch's changes as :class:`NodeBatch` objects.

        See :func:`open_node_changes`. A batch is made when the receiver asks for
        it, so a slow receiver gets the latest state of each node, merged.
        """
        async with NodeChanges(self, self._subscribe(FollowerView(filter, equals))) as changes:
            yield changes

    def _subscribe(self, view: FollowerView) -> _Subscription:
        if self._closed:
            raise WatchClosed("this watch has ended") from self._error
        subscription = _Subscription(view)
        if self._cluster.ever_synced:
            view.mark_all(self._cluster.nodes)
            subscription.doorbell.ring()
        self._subscriptions.add(subscription)
        return subscription

    def _unsubscribe(self, subscription: _Subscription) -> None:
        self._subscriptions.discard(subscription)
        subscription.doorbell.release()

    async def _next_batch(self, subscription: _Subscription) -> NodeBatch | None:
        """Wait for pending changes, then diff them (None when they change nothing)."""
        while not (self._cluster.ever_synced and subscription.view.has_pending):
            try:
                await subscription.doorbell.wait()
            except anyio.EndOfStream:
                raise WatchClosed("this watch has ended") from self._error
        return subscription.view.take_batch(self._cluster.nodes)

    def _publish(self, delta: ClusterDelta) -> None:
        for subscription in self._subscriptions:
            subscription.view.mark(delta)
            subscription.doorbell.ring()

    def _close(self, error: BaseException | None) -> None:
        self._closed = True
        self._error = error
        for subscription in self._subscriptions:
            subscription.doorbell.close()

    async def _run(self) -> NoReturn:
        request = WatchRequest(nodes_in_cluster=WatchRequestNodesInCluster())
        async with self._curator.open_stream(request) as stream:
            while True:
                try:
                    event = await _receive_event(stream)
                except anyio.EndOfStream:
                    if not self._cluster.synced:
                        raise ProtocolError(
                            "the Curator closed the stream before its backlog ended"
                        ) from None
                    raise ConnectionLost("the Curator ended the stream") from None
                decoded = await _decode(self._cluster.to_decode(event))
                delta = self._cluster.apply(event, decoded)
                if delta is not None:
                    self._publish(delta)
                if self._cluster.synced:
                    self._synced.set()


@contextlib.asynccontextmanager
async def open_node_watch(curator: Curator) -> AsyncIterator[NodeWatch]:
    """Open one NodesInCluster stream that any number of followers can share.

    Example::

        async with trionodes.open_node_watch(curator) as watch:
            async with trio.open_nursery() as nursery:
                await nursery.start(watch.follow, hosts_writer)
                await nursery.start(watch.follow, peer_list)

    Args:
        curator: The connection, from :func:`open_curator`.

    Yields:
        The watch. Leaving the block cancels the stream; followers still attached
        from outside the block get :class:`WatchClosed`.

    Raises:
        CuratorError: The Curator refused or ended the call with a status.
        ConnectionLost: The connection broke.
        ProtocolError: The Curator broke the wire contract.
    """
    watch = NodeWatch(curator)
    error: BaseException | None = None
    try:
        with sole_exception():
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch._run)
                yield watch
                tasks.cancel_scope.cancel()
    except BaseException as exc:
        error = exc
        raise
    finally:
        watch._close(error)


async def watch_nodes(
    curator: Curator,
    follower: Follower,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Follow every node of the cluster with ``follower`` until cancelled.

    Use ``await nursery.start(watch_nodes, curator, follower)`` to return once the
    follower has handled the whole initial cluster as one batch (ending in one
    ``batch_done``), or ``nursery.start_soon`` not to wait.

    Args:
        curator: The connection, from :func:`open_curator`.
        follower: Receives the changes; see :class:`Follower`.

    Raises:
        Exception: Whatever a follower callback raised, as it was raised.
        CuratorError: The Curator refused or ended the call with a status.
        ConnectionLost: The connection broke.
        ProtocolError: The Curator broke the wire contract.
    """
    async with open_node_watch(curator) as watch:
        await watch.follow(follower, task_status=task_status)


@contextlib.asynccontextmanager
async def open_node_changes(
    curator: Curator,
    filter: NodeFilter | None = None,
    equals: NodeEquals | None = None,
) -> AsyncIterator[NodeChanges]:
    """Follow every node of the cluster as a stream of :class:`NodeBatch` objects.

    Example::

        async with trionodes.open_node_changes(curator) as changes:
            async for batch in changes:
                for node in batch.new:
                    ...

    The first batch holds the whole initial cluster (``batch.initial``); each later
    one holds the changes since the previous batch that matter for ``filter`` and
    ``equals``. A batch is made when the receiver asks for it, so a slow receiver
    sees the latest state of each node.

    Args:
        curator: The connection, from :func:`open_curator`.
        filter: Admits a node into the view; None admits every node.
        equals: Says two states of a node are the same; None compares whole messages.

    Yields:
        The receiving end of the batches, an anyio object receive stream.
    """
    async with open_node_watch(curator) as watch, watch.open_changes(filter, equals) as changes:
        yield changes


class NodeWatcher:
    """Follows one node; make one with :func:`watch_node`.

    Iterating yields each new state of the node (the latest one when the consumer is
    slower than the changes). When the node is deleted the iteration ends and
    :attr:`deleted` is true.
    """

    def __init__(self, curator: Curator, node_id: str) -> None:
        self._curator = curator
        self._tracker = NodeTracker(node_id)
        self._doorbell = _Doorbell()
        self._version = 0
        self._seen = 0

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

    def __aiter__(self) -> NodeWatcher:
        return self

    async def __anext__(self) -> Node:
        while self._seen == self._version:
            await self._doorbell.wait()
        self._seen = self._version
        node = self._tracker.node
        if self._tracker.deleted or node is None:
            raise StopAsyncIteration
        return node

    async def _run(self) -> None:
        request = WatchRequest(node_in_cluster=WatchRequestNodeInCluster(node_id=self.node_id))
        tracker = self._tracker
        async with self._curator.open_stream(request) as stream:
            while not tracker.deleted:
                try:
                    event = await _receive_event(stream)
                except anyio.EndOfStream:
                    raise ConnectionLost("the Curator ended the stream") from None
                pending = tracker.to_decode(event)
                decoded = None if pending is None else decode_node(pending)
                if tracker.apply(event, decoded):
                    self._version += 1
                    self._doorbell.ring()
        # Deleted: the stream would stay open and idle forever, so it is closed.


@contextlib.asynccontextmanager
async def watch_node(curator: Curator, node_id: str) -> AsyncIterator[NodeWatcher]:
    """Follow one node (a NodeInCluster watch).

    Example::

        async with trionodes.watch_node(curator, node_id) as watcher:
            async for node in watcher:
                print(node.roles)
            assert watcher.deleted

    If the node does not exist yet, the watch waits for it. Nodes with other ids in
    the stream are dropped.

    Args:
        curator: The connection, from :func:`open_curator`.
        node_id: The node to follow.

    Yields:
        The watcher, an async iterator of the node's states.
    """
    watcher = NodeWatcher(curator, node_id)
    try:
        with sole_exception():
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watcher._run)
                yield watcher
                tasks.cancel_scope.cancel()
    finally:
        watcher._doorbell.release()
