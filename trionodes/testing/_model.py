"""The cluster a fake Curator serves and the Watch calls it serves it on; pure.

No event loop, no I/O: a change queues messages on the calls, and whoever serves
them (the network server, or the in-memory curator) takes them when woken. Both
fakes are this model behind a different transport, so they behave the same:

* NodesInCluster: a backlog of every node, shuffled and split over several events,
  the last one marked ``PROGRESS_LAST_BACKLOGGED``; then one event per change.
* NodeInCluster: waits until the node exists, sends each new state, sends a
  tombstone on deletion and then stays open and idle. With ``spurious_nodes`` set,
  its events also carry other nodes, as a real Curator's may.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

from .._core.wire import encode_watch_event
from .._errors import CuratorError, StatusCode
from .._proto.metropolis.node.core.curator.proto.api import Node, WatchRequest

AuthorizePolicy: TypeAlias = Callable[[Mapping[str, Any] | None], CuratorError | None]
"""Decides whether the fake serves a call: given the client's verified certificate
(as :meth:`ssl.SSLSocket.getpeercert` gives it; None over plain text, in memory, or
when the client presented none), returns None to serve it or the
:class:`CuratorError` to refuse it with."""

# A real Curator keeps each backlog message near or under 2 MiB.
DEFAULT_MESSAGE_BYTES = 2 * 1024 * 1024
# What a node costs in a WatchEvent beyond its own bytes: a tag and a length.
_FIELD_OVERHEAD = 8


class ModelSession:
    """One Watch call being served: the messages it has yet to send.

    Its transport calls :meth:`take` for what to send, :meth:`set_waker` to hear
    when there is more, and :meth:`close` once the call has ended.
    """

    def __init__(self, model: ClusterModel, node_id: str | None, allowance: int | None) -> None:
        self._model = model
        self.node_id = node_id
        """None for a NodesInCluster call; else the node a NodeInCluster call follows."""
        # How many more messages it may send while the model stalls; None: no stall.
        self._allowance = allowance
        # Its transport is about to drop it: its end counts as dropped, not cancelled.
        self.dropped = False
        self._queue: list[bytes | CuratorError] = []
        self._waker: Callable[[], None] | None = None

    def push(self, item: bytes | CuratorError) -> None:
        """Queue a message, or the status to end the call with."""
        self._queue.append(item)
        self._wake()

    def take(self) -> list[bytes | CuratorError]:
        """What may be sent now, in order; a :class:`CuratorError` ends the call.

        Empty while nothing is queued or while stalled: wait for the waker.
        """
        if self._allowance is None:
            items, self._queue = self._queue, []
        else:
            items, self._queue = self._queue[: self._allowance], self._queue[self._allowance :]
            self._allowance -= len(items)
        return items

    def allow(self, allowance: int | None) -> None:
        """Let the call send ``allowance`` more messages, or everything (None)."""
        self._allowance = allowance
        self._wake()

    def set_waker(self, waker: Callable[[], None]) -> None:
        """Register the function to call when :meth:`take` may have something new."""
        self._waker = waker
        if self._queue:
            waker()

    def close(self, cancelled: bool) -> None:
        """The call ended; ``cancelled`` if the client (or a lost connection) ended it."""
        self._model._session_closed(self, cancelled)

    def _wake(self) -> None:
        if self._waker is not None:
            self._waker()


class ClusterModel:
    """A cluster held in memory, and the Watch calls being served from it.

    The cluster survives every fault: a client that starts a new call gets a
    backlog of the current cluster.
    """

    streams_opened: int
    """How many Watch calls have been accepted."""
    streams_cancelled: int
    """How many of them the client cancelled."""
    streams_dropped: int
    """How many of them ended because the fake dropped them (their connections or,
    in memory, their streams)."""
    streams_refused: int
    """How many Watch calls ``authorize`` refused."""
    authorize: AuthorizePolicy | None
    """None serves every call (the default). Else an :data:`AuthorizePolicy`, asked
    before each new call, like a Curator's authorization check; calls already open
    are not affected. For example, to answer like a Curator asked by a client
    without the permission::

        fake.authorize = lambda cert: CuratorError(
            StatusCode.PERMISSION_DENIED, "not an owner"
        )

    With mutual TLS, the TLS handshake itself already refuses clients without a
    valid certificate from the client CA (see :func:`server_ssl_context`); the
    policy sees only the others."""

    def __init__(
        self,
        *,
        backlog_nodes_per_event: int | None = None,
        max_message_bytes: int = DEFAULT_MESSAGE_BYTES,
        shuffle_seed: int | None = 0,
        spurious_nodes: bool = False,
    ) -> None:
        """Make an empty cluster; the options are described at :func:`open_fake_curator`."""
        self.streams_opened = 0
        self.streams_cancelled = 0
        self.streams_dropped = 0
        self.streams_refused = 0
        self.authorize = None
        self._backlog_nodes_per_event = backlog_nodes_per_event
        self._max_message_bytes = max_message_bytes
        self._random = random.Random(shuffle_seed)
        self._spurious_nodes = spurious_nodes
        self._nodes: dict[str, Node] = {}
        # Each node serialized once, when it changes, not once per call.
        self._raw: dict[str, bytes] = {}
        self._sessions: set[ModelSession] = set()
        # Messages each call may still send while stalled; None: not stalled.
        self._stall_allowance: int | None = None

    @property
    def nodes(self) -> Mapping[str, Node]:
        """The cluster: node id to node (read-only; change it with the methods below)."""
        return self._nodes

    @property
    def active_streams(self) -> int:
        """How many Watch calls are being served now."""
        return len(self._sessions)

    @property
    def stalled(self) -> bool:
        """Whether :meth:`stall` is in force."""
        return self._stall_allowance is not None

    def put(self, *nodes: Node) -> None:
        """Create or update ``nodes``, announced in one event."""
        self.change(put=nodes)

    def delete(self, *node_ids: str, silently: bool = False) -> None:
        """Delete nodes, announced in one event (unknown ids are ignored).

        Args:
            node_ids: The nodes to delete.
            silently: Tell no open Watch call: the nodes are only missing from
                later backlogs. This is what a Curator does when its etcd watch is
                rebuilt (after a compaction, or a cancelled etcd watch): it re-sends
                the nodes that exist and no tombstone for one deleted in the gap.
                A watch finds out at its next relist or reconnect (see
                :func:`trionodes.open_node_watch`).
        """
        if not silently:
            self.change(delete=node_ids)
            return
        for node_id in node_ids:
            if self._nodes.pop(node_id, None) is not None:
                del self._raw[node_id]

    def change(self, put: Iterable[Node] = (), delete: Iterable[str] = ()) -> None:
        """Create or update ``put`` and delete ``delete``, announced in one event."""
        put_raw = [(node.id, bytes(node), node) for node in put]
        deleted = [node_id for node_id in delete if node_id in self._nodes]
        for node_id, raw, node in put_raw:
            self._nodes[node_id] = node
            self._raw[node_id] = raw
        for node_id in deleted:
            del self._nodes[node_id]
            del self._raw[node_id]
        if not put_raw and not deleted:
            return
        everything = encode_watch_event([raw for _, raw, _ in put_raw], deleted)
        for session in self._sessions:
            if session.node_id is None or self._spurious_nodes:
                session.push(everything)
                continue
            own = [raw for node_id, raw, _ in put_raw if node_id == session.node_id]
            if session.node_id in deleted:
                session.push(encode_watch_event(own, [session.node_id]))
            elif own:
                session.push(encode_watch_event(own[-1:], []))

    def fail_streams(self, status: StatusCode = StatusCode.UNAVAILABLE, details: str = "") -> None:
        """End every open Watch call with ``status``, after what was already queued.

        ``OK`` ends them cleanly. While stalled, the status waits its turn like a
        message.
        """
        for session in self._sessions:
            session.push(CuratorError(status, details))

    def send_raw(self, data: bytes, *, node_id: str | None = None) -> int:
        """Send ``data`` as it is, as one message, on open Watch calls.

        For hostile input: undecodable bytes, or events a Curator never sends, built
        with :func:`encode_watch_event` (duplicate ids, a node and its tombstone,
        tombstones for unknown ids, a second ``LAST_BACKLOGGED``). The cluster does
        not change. There is no size limit: a message of 64 MiB, for example, is
        ``encode_watch_event([bytes(node)] * 330_000)``.

        Args:
            data: The serialized message, sent after what was already queued.
            node_id: None sends it on every NodesInCluster call; a node id, on every
                NodeInCluster call for that node.

        Returns:
            How many calls it was queued on.
        """
        sessions = [session for session in self._sessions if session.node_id == node_id]
        for session in sessions:
            session.push(data)
        return len(sessions)

    def stall(self, *, after_messages: int = 0) -> None:
        """Stop sending on Watch calls, open and new, until :meth:`resume`.

        Changes are queued meanwhile. Only the calls stall: a network fake's
        connections stay healthy and answer HTTP/2 pings, so keepalive does not
        notice.

        Args:
            after_messages: Each call first sends this many more messages (an ending
                status counts as one); a new call, this many of its backlog. For
                example ``stall(after_messages=1)`` before a client connects stalls
                its backlog after the first event.
        """
        self._stall_allowance = after_messages
        for session in self._sessions:
            session.allow(after_messages)

    def resume(self) -> None:
        """End :meth:`stall`: calls send everything queued meanwhile."""
        self._stall_allowance = None
        for session in self._sessions:
            session.allow(None)

    def open_session(
        self, request: WatchRequest, *, peer_cert: Mapping[str, Any] | None = None
    ) -> ModelSession:
        """Start serving one Watch call (called by the transport).

        Args:
            request: The call's request.
            peer_cert: The client's verified certificate, for ``authorize``.

        Raises:
            CuratorError: ``authorize`` refused the call, or the request is invalid.
        """
        if self.authorize is not None:
            refusal = self.authorize(peer_cert)
            if refusal is not None:
                self.streams_refused += 1
                raise refusal
        if request.nodes_in_cluster is not None:
            session = ModelSession(self, None, self._stall_allowance)
            for message in self._backlog():
                session.push(message)
        elif request.node_in_cluster is not None:
            node_id = request.node_in_cluster.node_id
            if not node_id:
                raise CuratorError(StatusCode.INVALID_ARGUMENT, "node_id is empty")
            session = ModelSession(self, node_id, self._stall_allowance)
            if node_id in self._raw:
                session.push(encode_watch_event(self._node_event_raw(node_id), []))
        else:
            raise CuratorError(StatusCode.UNIMPLEMENTED, "unknown watch kind")
        self._sessions.add(session)
        self.streams_opened += 1
        return session

    def _mark_open_streams_dropped(self) -> None:
        """Count the calls open now as dropped when they end: their transport drops them."""
        for session in self._sessions:
            session.dropped = True

    def _became_idle(self) -> None:
        """Called when the last open call ends; for those who wait for that."""

    def _node_event_raw(self, node_id: str) -> list[bytes]:
        raw = [self._raw[node_id]]
        if self._spurious_nodes:
            raw.extend(data for other, data in self._raw.items() if other != node_id)
        return raw

    def _backlog(self) -> list[bytes]:
        raws = list(self._raw.values())
        self._random.shuffle(raws)
        messages: list[bytes] = []
        chunk: list[bytes] = []
        size = 0
        per_event = self._backlog_nodes_per_event
        for raw in raws:
            full = per_event is not None and len(chunk) >= per_event
            if chunk and (full or size + len(raw) > self._max_message_bytes):
                messages.append(encode_watch_event(chunk, []))
                chunk, size = [], 0
            chunk.append(raw)
            size += len(raw) + _FIELD_OVERHEAD
        messages.append(encode_watch_event(chunk, [], last_backlogged=True))
        return messages

    def _session_closed(self, session: ModelSession, cancelled: bool) -> None:
        self._sessions.remove(session)
        if session.dropped:
            self.streams_dropped += 1
        elif cancelled:
            self.streams_cancelled += 1
        if not self._sessions:
            self._became_idle()
