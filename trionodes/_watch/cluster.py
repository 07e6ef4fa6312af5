"""The cluster watch: one NodesInCluster stream shared by followers and change streams.

The stream task splits each message, decodes only what changed (in chunks, so a
large backlog does not freeze the event loop), applies it to the pure engine
(:class:`~trionodes._core.engine.Cluster`) and marks every receiver's pending
changes. Each receiver takes a batch whenever it is ready (see :mod:`.delivery`):
a slow one never holds up the stream or another receiver, and its pending changes
collapse per node, so memory stays bounded by the number of nodes, not of events.

When a stream fails in a way that retrying can fix, or when a relist is due, the
reconnect loop (:mod:`.reconnect`) opens a new one. The engine collects the new
backlog while the last view stays in force and commits it as one change, so
receivers see one ``RESYNC`` batch with only what differs.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import NoReturn, final

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.abc import ObjectReceiveStream

from .._core.engine import (
    BatchKind,
    Cluster,
    ClusterDelta,
    FollowerView,
    NodeBatch,
    NodeEquals,
    NodeFilter,
)
from .._core.retry import RetryPolicy
from .._curator import Curator
from .._errors import WatchClosed
from .._follower import Follower
from .._proto.metropolis.node.core.curator.proto.api import (
    Node,
    WatchRequest,
    WatchRequestNodesInCluster,
)
from .._stats import Counters, WatchStats
from .delivery import Delivery, call_follower
from .receive import decode_in_chunks, receive_event
from .reconnect import DEFAULT_RETRY, Reconnector
from .steps import run_in_steps

_WATCH_ENDED = "this watch has ended"


@dataclass(frozen=True, slots=True)
class _Subscription:
    """One receiver of a cluster watch: its view, and the way batches reach it."""

    view: FollowerView
    delivery: Delivery[NodeBatch]


@final
class NodeChanges(ObjectReceiveStream[NodeBatch]):
    """The receiving end of one view's batches; see :func:`open_node_changes`.

    An anyio object receive stream: ``await changes.receive()`` or
    ``async for batch in changes``. Each batch is diffed when it is asked for.
    Made by :func:`open_node_changes` and :meth:`ClusterWatch.open_changes`.

    Once its block has ended, or after :meth:`aclose`, receiving raises
    :class:`WatchClosed`.
    """

    _watch: ClusterWatch
    _subscription: _Subscription

    def __init__(self) -> None:
        raise TypeError(
            "NodeChanges objects are made by trionodes.open_node_changes "
            "and ClusterWatch.open_changes"
        )

    @classmethod
    def _of(cls, watch: ClusterWatch, subscription: _Subscription) -> NodeChanges:
        self = object.__new__(cls)
        self._watch = watch
        self._subscription = subscription
        return self

    def __repr__(self) -> str:
        return f"<trionodes.NodeChanges of {self._watch._describe()}>"

    async def receive(self) -> NodeBatch:
        """Wait for the next batch with at least one change (or the initial one).

        Raises:
            WatchClosed: The watch ended (its error, if any, is the cause), or this
                stream was closed.
        """
        return await self._subscription.delivery.next()

    async def aclose(self) -> None:
        """Stop receiving; the watch forgets this view."""
        self._watch._unsubscribe(self._subscription, "these node changes were closed")
        await anyio.lowlevel.checkpoint()


@final
class ClusterWatch:
    """One NodesInCluster stream shared by any number of followers and change streams.

    Made by :func:`open_node_watch`. Once its block has ended, :meth:`follow`,
    :meth:`open_changes` and :meth:`wait_synced` raise :class:`WatchClosed`;
    :attr:`nodes` and :attr:`stats` stay readable.
    """

    _curator: Curator
    _counters: Counters
    _reconnector: Reconnector
    _cluster: Cluster
    _subscriptions: set[_Subscription]
    _synced: anyio.Event
    _closed: bool
    _error: BaseException | None

    def __init__(self) -> None:
        raise TypeError("ClusterWatch objects are made by trionodes.open_node_watch")

    @classmethod
    def _open(cls, curator: Curator, retry: RetryPolicy, relist: float | None) -> ClusterWatch:
        self = object.__new__(cls)
        self._curator = curator
        self._counters = Counters()
        self._reconnector = Reconnector(
            retry,
            relist,
            self._counters,
            lambda: f"watch of the cluster at {curator._where}",
        )
        self._cluster = Cluster()
        self._subscriptions = set()
        # Set when the first backlog is in, or when the watch ends before that.
        self._synced = anyio.Event()
        self._closed = False
        self._error = None
        return self

    def _describe(self) -> str:
        state = "closed" if self._closed else "synced" if self._cluster.ever_synced else "syncing"
        return (
            f"ClusterWatch of {self._curator.host}:{self._curator.port}, "
            f"{len(self._cluster.nodes)} nodes, {state}"
        )

    def __repr__(self) -> str:
        return f"<trionodes.{self._describe()}>"

    @property
    def nodes(self) -> Mapping[str, Node]:
        """The whole cluster as last committed: an immutable snapshot, node id to node.

        Empty until the initial backlog is in (see :meth:`wait_synced`).
        """
        return self._cluster.nodes

    async def wait_synced(self) -> None:
        """Return once the initial backlog has been received and applied.

        Raises:
            WatchClosed: The watch has ended (before its backlog was in, or before
                this call).
        """
        await self._synced.wait()
        if self._closed:
            raise WatchClosed(_WATCH_ENDED) from self._error

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
                batch = await subscription.delivery.next()
                await call_follower(follower, batch)
                if batch.initial:
                    task_status.started()
        finally:
            self._unsubscribe(subscription, _WATCH_ENDED)

    @contextlib.asynccontextmanager
    async def open_changes(
        self, filter: NodeFilter | None = None, equals: NodeEquals | None = None
    ) -> AsyncIterator[NodeChanges]:
        """Receive this watch's changes as :class:`NodeBatch` objects.

        See :func:`open_node_changes`. A batch is made when the receiver asks for
        it, so a slow receiver gets the latest state of each node, merged.

        Raises:
            WatchClosed: The watch has ended.
        """
        async with NodeChanges._of(self, self._subscribe(FollowerView(filter, equals))) as changes:
            yield changes

    def _subscribe(self, view: FollowerView) -> _Subscription:
        if self._closed:
            raise WatchClosed(_WATCH_ENDED) from self._error
        subscription = _Subscription(
            view, Delivery(functools.partial(self._take_batch, view), self._counters)
        )
        if self._cluster.ever_synced:
            view.mark_all(self._cluster.nodes)
            subscription.delivery.ring()
        self._subscriptions.add(subscription)
        return subscription

    def _unsubscribe(self, subscription: _Subscription, reason: str) -> None:
        self._subscriptions.discard(subscription)
        subscription.delivery.close(reason)

    async def _take_batch(self, view: FollowerView) -> NodeBatch | None:
        """The view's pending changes as a batch; None until the first sync, or when
        they change nothing for it. A big diff runs over checkpoints."""
        if not (self._cluster.ever_synced and view.has_pending):
            return None
        return await run_in_steps(view.take_batch_steps(self._cluster.nodes))

    def _publish(self, delta: ClusterDelta) -> None:
        for subscription in self._subscriptions:
            subscription.view.mark(delta)
            subscription.delivery.ring()

    def _close(self, error: BaseException | None) -> None:
        self._closed = True
        self._error = error
        self._synced.set()
        for subscription in self._subscriptions:
            subscription.delivery.close(_WATCH_ENDED, error)

    async def _follow_stream(self) -> None:
        """Follow one stream until it fails, or until its relist is due."""
        cluster = self._cluster
        cluster.restart()
        reconnector = self._reconnector
        backlog_timeout = reconnector.policy.backlog_timeout
        request = WatchRequest(nodes_in_cluster=WatchRequestNodesInCluster())
        async with self._curator._open_stream(request) as stream:
            with reconnector.until_relist():
                while True:
                    event = await receive_event(
                        stream, in_backlog=not cluster.synced, backlog_timeout=backlog_timeout
                    )
                    reconnector.received()
                    decoded = await decode_in_chunks(cluster.to_decode(event))
                    delta = await run_in_steps(cluster.apply_steps(event, decoded))
                    if delta is not None:
                        self._publish(delta)
                        if delta.kind is not BatchKind.LIVE:
                            reconnector.synced()
                            self._synced.set()


@contextlib.asynccontextmanager
async def open_node_watch(
    curator: Curator,
    *,
    retry: RetryPolicy | None = None,
    relist: float | None = 3600.0,
) -> AsyncIterator[ClusterWatch]:
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
    the ``trionodes`` logger and counted in :attr:`ClusterWatch.stats`.

    **Relist.** A Curator can lose deletions: when its etcd watch is rebuilt, it
    re-sends every node on the open streams but no tombstone for a node deleted in
    the gap, so that node would stay in the view for as long as the stream lasts.
    Every ``relist`` seconds after a stream synced, the watch therefore opens a
    fresh stream, collects its backlog while the view stays as it was, and commits
    it like a reconnect's: followers get one ``RESYNC`` batch of the real
    differences, and nothing at all when nothing differs. A relist is not a fault:
    no backoff, one ``INFO`` line, counted in :attr:`WatchStats.relists`. It is on by
    default, once an hour: a ghost node is a wrong answer that nothing else would
    ever correct, while a relist costs one backlog (for 10,000 nodes, well under a
    second of CPU; only the nodes whose bytes changed are decoded; the failure
    handling page of the docs has the measured cost).

    Args:
        curator: The connection, from :func:`open_curator`.
        retry: When and how to reconnect after a fault; None for the defaults
            (see :class:`RetryPolicy`).
        relist: Seconds from a stream's sync to its relist (a reconnect's resync
            restarts the clock); None never relists.

    Yields:
        The watch. Leaving the block cancels the stream; followers still attached
        from outside the block get :class:`WatchClosed`.

    Raises:
        CuratorError: The Curator refused the call with a status that retrying
            cannot fix (see :attr:`RetryPolicy.permanent_statuses`).
        TLSError: TLS failed in a way that retrying cannot fix.
        ValueError: ``relist`` is not a positive number of seconds or None.
    """
    watch = ClusterWatch._open(curator, retry or DEFAULT_RETRY, relist)
    async with watch._reconnector.running(watch._follow_stream, watch._close):
        yield watch


async def watch_nodes(
    curator: Curator,
    follower: Follower,
    *,
    retry: RetryPolicy | None = None,
    relist: float | None = 3600.0,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Follow every node of the cluster with ``follower`` until cancelled.

    Use ``await nursery.start(watch_nodes, curator, follower)`` to return once the
    follower has handled the whole initial cluster as one batch (ending in one
    ``batch_done``), or ``nursery.start_soon`` not to wait.

    Faults that retrying can fix do not end the watch, and a periodic relist heals
    deletions a Curator failed to report; see :func:`open_node_watch`.

    Args:
        curator: The connection, from :func:`open_curator`.
        follower: Receives the changes; see :class:`Follower`.
        retry: When and how to reconnect after a fault; None for the defaults
            (see :class:`RetryPolicy`).
        relist: Seconds between relists; None never relists (see
            :func:`open_node_watch`).

    Raises:
        Exception: Whatever a follower callback raised, as it was raised.
        CuratorError: The Curator refused the call with a status that retrying
            cannot fix.
        TLSError: TLS failed in a way that retrying cannot fix.
    """
    async with open_node_watch(curator, retry=retry, relist=relist) as watch:
        await watch.follow(follower, task_status=task_status)


@contextlib.asynccontextmanager
async def open_node_changes(
    curator: Curator,
    filter: NodeFilter | None = None,
    equals: NodeEquals | None = None,
    *,
    retry: RetryPolicy | None = None,
    relist: float | None = 3600.0,
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
    sees the latest state of each node. After a reconnect or a relist, what changed
    meanwhile comes as one batch whose ``kind`` is ``RESYNC``; see
    :func:`open_node_watch`.

    Args:
        curator: The connection, from :func:`open_curator`.
        filter: Admits a node into the view; None admits every node.
        equals: Says two states of a node are the same; None compares whole messages.
        retry: When and how to reconnect after a fault; None for the defaults
            (see :class:`RetryPolicy`).
        relist: Seconds between relists; None never relists (see
            :func:`open_node_watch`).

    Yields:
        The receiving end of the batches, an anyio object receive stream. After
        the block, receiving from it raises :class:`WatchClosed`.
    """
    async with (
        open_node_watch(curator, retry=retry, relist=relist) as watch,
        watch.open_changes(filter, equals) as changes,
    ):
        yield changes
