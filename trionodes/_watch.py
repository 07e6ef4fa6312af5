"""Watches: the tasks that read a Curator's stream and feed followers.

The stream task splits each message, decodes only what changed (in chunks, so a
large backlog does not freeze the event loop), applies it to the pure engine and
marks every follower's pending changes. Each follower runs in its own task and takes a
batch whenever it is ready: a slow follower never holds up the stream or another
follower, and its pending changes collapse per node, so memory stays bounded by the
number of nodes, not the number of events.

When a stream fails in a way that retrying can fix, the stream task waits as its
:class:`RetryPolicy` says and opens a new one. The engine collects the new backlog
and commits it as one change, so followers see one ``RESYNC`` batch with only what
changed meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import NoReturn

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.abc import ObjectReceiveStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._core.engine import (
    BacklogLookup,
    BatchKind,
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
from ._core.retry import GiveUp, ReconnectState, RetryPolicy
from ._core.stream import end_of_stream_error, silence_error, silence_timeout
from ._core.wire import RawEvent, split_watch_event
from ._curator import Curator, RawStream
from ._errors import (
    TrionodesError,
    WatchClosed,
)
from ._follower import Follower, deliver
from ._groups import sole_exception
from ._proto.metropolis.node.core.curator.proto.api import (
    Node,
    WatchRequest,
    WatchRequestNodeInCluster,
    WatchRequestNodesInCluster,
)
from ._stats import Counters, WatchStats

_log = logging.getLogger("trionodes")

# Nodes decoded between two checkpoints (about 20 ms of decoding).
_DECODE_CHUNK = 200

_DEFAULT_RETRY = RetryPolicy()


async def _receive_event(
    stream: RawStream, *, in_backlog: bool, backlog_timeout: float | None = None
) -> RawEvent:
    """The next event of ``stream``, split.

    Args:
        stream: The call's messages.
        in_backlog: Whether the stream's backlog is still coming; once it is in, a
            quiet stream is normal and a clean end is no breach of contract.
        backlog_timeout: In a backlog, give up after this many seconds of silence.

    Raises:
        ProtocolError: The Curator ended the call before its backlog ended.
        ConnectionLost: The Curator ended the call after its backlog, or sent
            nothing for ``backlog_timeout`` seconds in the middle of its backlog.
    """
    timeout = silence_timeout(in_backlog, backlog_timeout)
    try:
        if timeout is None:  # the common case: no cancel scope per live event
            return split_watch_event(await stream.receive())
        with anyio.move_on_after(timeout):
            return split_watch_event(await stream.receive())
    except anyio.EndOfStream:
        raise end_of_stream_error(in_backlog) from None
    raise silence_error(timeout)


class _Reconnector:
    """Runs one stream after another, waiting between failures as the policy says.

    The decisions are the pure :class:`ReconnectState`'s; this keeps the watch's
    counters, logs each failure on the ``trionodes`` logger and sleeps.
    """

    def __init__(self, policy: RetryPolicy, counters: Counters, what: str) -> None:
        self.policy = policy
        self._counters = counters
        self._what = what
        self._state = ReconnectState(policy)

    def received(self) -> None:
        """Note that the current stream delivered a message."""
        self._counters.events_received += 1
        self._counters.connected = True
        self._state.received()

    def synced(self) -> None:
        """Note that the current stream's view of the cluster is complete."""
        self._counters.synced = True
        outage = self._state.synced(anyio.current_time())
        if outage:
            _log.info("%s is back after %d failed streams", self._what, outage)

    async def run(self, follow_stream: Callable[[], Awaitable[None]]) -> None:
        """Call ``follow_stream`` until it returns or fails beyond retrying.

        Raises:
            TrionodesError: A fault that the policy does not retry.
        """
        counters = self._counters
        while True:
            try:
                with sole_exception():
                    await follow_stream()
                return
            except TrionodesError as error:
                decision = self._state.failed(error, anyio.current_time())
                if isinstance(decision, GiveUp):
                    counters.last_error = decision.error
                    _log.error("%s failed: %s; not retrying", self._what, decision.error)
                    if decision.error is error:
                        raise
                    raise decision.error from error
                counters.last_error = failure = error
            finally:
                counters.connected = counters.synced = False
            _log.warning(
                "%s failed: %s; reconnecting in %.2f s (failure %d in a row)",
                self._what,
                failure,
                decision.delay,
                decision.failures,
            )
            await anyio.sleep(decision.delay)
            counters.reconnects += 1


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
                self._watch._counters.batches_delivered += 1
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

    def __init__(self, curator: Curator, retry: RetryPolicy = _DEFAULT_RETRY) -> None:
        self._curator = curator
        self._counters = Counters()
        self._reconnector = _Reconnector(
            retry, self._counters, f"NodesInCluster watch of {curator.host}:{curator.port}"
        )
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

    @property
    def stats(self) -> WatchStats:
        """This watch's counters and state, as they are now."""
        return self._counters.snapshot()

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
                    self._counters.batches_delivered += 1
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

    async def _run(self) -> None:
        await self._reconnector.run(self._follow_stream)

    async def _follow_stream(self) -> NoReturn:
        cluster = self._cluster
        cluster.restart()
        reconnector = self._reconnector
        backlog_timeout = reconnector.policy.backlog_timeout
        request = WatchRequest(nodes_in_cluster=WatchRequestNodesInCluster())
        async with self._curator._open_stream(request) as stream:
            while True:
                event = await _receive_event(
                    stream, in_backlog=not cluster.synced, backlog_timeout=backlog_timeout
                )
                reconnector.received()
                decoded = await _decode(cluster.to_decode(event))
                delta = cluster.apply(event, decoded)
                if delta is not None:
                    self._publish(delta)
                    if delta.kind is not BatchKind.LIVE:
                        reconnector.synced()
                        self._synced.set()


@contextlib.asynccontextmanager
async def open_node_watch(
    curator: Curator, *, retry: RetryPolicy | None = None
) -> AsyncIterator[NodeWatch]:
    """Open one NodesInCluster stream that any number of followers can share.

    Example::

        async with trionodes.open_node_watch(curator) as watch:
            async with trio.open_nursery() as nursery:
                await nursery.start(watch.follow, hosts_writer)
                await nursery.start(watch.follow, peer_list)

    Faults that retrying can fix (a broken or refused connection, a stream that
    ends, ``UNAVAILABLE``, a keepalive timeout, input that breaks the wire contract)
    do not end the watch: it reconnects, collects the new backlog and delivers what
    changed meanwhile as one ``RESYNC`` batch per follower. Each fault is logged on
    the ``trionodes`` logger and counted in :attr:`NodeWatch.stats`.

    Args:
        curator: The connection, from :func:`open_curator`.
        retry: When and how to reconnect after a fault; None for the defaults
            (see :class:`RetryPolicy`).

    Yields:
        The watch. Leaving the block cancels the stream; followers still attached
        from outside the block get :class:`WatchClosed`.

    Raises:
        CuratorError: The Curator refused the call with a status that retrying
            cannot fix (see :attr:`RetryPolicy.permanent_statuses`).
        TLSError: TLS failed in a way that retrying cannot fix.
    """
    watch = NodeWatch(curator, retry or _DEFAULT_RETRY)
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
    retry: RetryPolicy | None = None,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Follow every node of the cluster with ``follower`` until cancelled.

    Use ``await nursery.start(watch_nodes, curator, follower)`` to return once the
    follower has handled the whole initial cluster as one batch (ending in one
    ``batch_done``), or ``nursery.start_soon`` not to wait.

    Faults that retrying can fix do not end the watch; see :func:`open_node_watch`.

    Args:
        curator: The connection, from :func:`open_curator`.
        follower: Receives the changes; see :class:`Follower`.
        retry: When and how to reconnect after a fault; None for the defaults
            (see :class:`RetryPolicy`).

    Raises:
        Exception: Whatever a follower callback raised, as it was raised.
        CuratorError: The Curator refused the call with a status that retrying
            cannot fix.
        TLSError: TLS failed in a way that retrying cannot fix.
    """
    async with open_node_watch(curator, retry=retry) as watch:
        await watch.follow(follower, task_status=task_status)


@contextlib.asynccontextmanager
async def open_node_changes(
    curator: Curator,
    filter: NodeFilter | None = None,
    equals: NodeEquals | None = None,
    *,
    retry: RetryPolicy | None = None,
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
    sees the latest state of each node. After a reconnect, what changed meanwhile
    comes as one batch whose ``kind`` is ``RESYNC``; see :func:`open_node_watch`.

    Args:
        curator: The connection, from :func:`open_curator`.
        filter: Admits a node into the view; None admits every node.
        equals: Says two states of a node are the same; None compares whole messages.
        retry: When and how to reconnect after a fault; None for the defaults
            (see :class:`RetryPolicy`).

    Yields:
        The receiving end of the batches, an anyio object receive stream.
    """
    async with (
        open_node_watch(curator, retry=retry) as watch,
        watch.open_changes(filter, equals) as changes,
    ):
        yield changes


class NodeWatcher:
    """Follows one node; make one with :func:`watch_node`.

    Iterating yields each new state of the node (the latest one when the consumer is
    slower than the changes). When the node is deleted the iteration ends and
    :attr:`deleted` is true.
    """

    def __init__(self, curator: Curator, node_id: str, retry: RetryPolicy = _DEFAULT_RETRY) -> None:
        self._curator = curator
        self._tracker = NodeTracker(node_id)
        self._counters = Counters()
        self._reconnector = _Reconnector(
            retry,
            self._counters,
            f"NodeInCluster watch of {node_id} on {curator.host}:{curator.port}",
        )
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

    @property
    def stats(self) -> WatchStats:
        """This watch's counters and state, as they are now.

        ``synced`` means the current stream has confirmed the node's state: it sent
        the node, or a resumed watch found it in the cluster.
        """
        return self._counters.snapshot()

    def __aiter__(self) -> NodeWatcher:
        return self

    async def __anext__(self) -> Node:
        while self._seen == self._version:
            await self._doorbell.wait()
        self._seen = self._version
        node = self._tracker.node
        if self._tracker.deleted or node is None:
            raise StopAsyncIteration
        self._counters.batches_delivered += 1
        return node

    def _apply(self, source: RawEvent | BacklogLookup) -> None:
        tracker = self._tracker
        pending = tracker.to_decode(source)
        decoded = None if pending is None else decode_node(pending)
        if tracker.apply(source, decoded):
            self._version += 1
            self._doorbell.ring()

    async def _run(self) -> None:
        await self._reconnector.run(self._follow_stream)

    async def _follow_stream(self) -> None:
        """Follow the node on one stream until it is deleted."""
        tracker = self._tracker
        reconnector = self._reconnector
        request = WatchRequest(node_in_cluster=WatchRequestNodeInCluster(node_id=self.node_id))
        async with self._curator._open_stream(request) as stream:
            # Resuming a node seen before: a NodeInCluster stream waits in silence for
            # a node deleted during the outage, so look for it in the whole cluster.
            # The stream is opened first: a deletion after the lookup then reaches it.
            if tracker.node is not None:
                self._apply(await self._look_up())
                reconnector.synced()
            while not tracker.deleted:
                # NodeInCluster has no backlog to speak of: any end is a lost stream.
                event = await _receive_event(stream, in_backlog=False)
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
                event = await _receive_event(
                    stream, in_backlog=True, backlog_timeout=backlog_timeout
                )
                if lookup.feed(event):
                    return lookup


@contextlib.asynccontextmanager
async def watch_node(
    curator: Curator, node_id: str, *, retry: RetryPolicy | None = None
) -> AsyncIterator[NodeWatcher]:
    """Follow one node (a NodeInCluster watch).

    Example::

        async with trionodes.watch_node(curator, node_id) as watcher:
            async for node in watcher:
                print(node.roles)
            assert watcher.deleted

    If the node does not exist yet, the watch waits for it. Nodes with other ids in
    the stream are dropped. After a fault that retrying can fix the watch reconnects
    (see :func:`open_node_watch`): an unchanged node is not yielded again, and a
    node deleted during the outage still ends the iteration with :attr:`deleted`
    set, found by looking the node up in the cluster's backlog.

    Args:
        curator: The connection, from :func:`open_curator`.
        node_id: The node to follow.
        retry: When and how to reconnect after a fault; None for the defaults
            (see :class:`RetryPolicy`).

    Yields:
        The watcher, an async iterator of the node's states.

    Raises:
        CuratorError: The Curator refused the call with a status that retrying
            cannot fix.
        TLSError: TLS failed in a way that retrying cannot fix.
    """
    watcher = NodeWatcher(curator, node_id, retry or _DEFAULT_RETRY)
    try:
        with sole_exception():
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watcher._run)
                yield watcher
                tasks.cancel_scope.cancel()
    finally:
        watcher._doorbell.release()
