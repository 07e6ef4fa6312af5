"""A fake Curator for tests, demos and trying things out.

:func:`open_fake_curator` starts a real gRPC server on 127.0.0.1 that serves
``Curator.Watch`` from an in-memory cluster, the way a real Curator does:

* NodesInCluster: a backlog of every node, shuffled and split over several events,
  the last one marked ``PROGRESS_LAST_BACKLOGGED``; then one event per change.
* NodeInCluster: waits until the node exists, sends each new state, sends a
  tombstone on deletion and then stays open and idle. With ``spurious_nodes`` set,
  its events also carry other nodes, as a real Curator's may.

Change the cluster with :meth:`FakeCurator.put`, :meth:`FakeCurator.delete` and
:meth:`FakeCurator.change` (several nodes in one event). Works from Trio and from
asyncio::

    async with open_fake_curator() as fake:
        fake.put(make_node(1), make_node(2))
        async with trionodes.open_curator(fake.host, fake.port) as curator:
            ...

For mutual TLS, pass ``ssl=server_ssl_context(cert, key, client_ca=ca)`` and connect
with ``trionodes.client_ssl_context``; set :attr:`FakeCurator.authorize` to refuse
calls with ``PERMISSION_DENIED`` or ``UNAUTHENTICATED`` as a Curator does.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import random
import ssl as _ssl
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, TypeAlias

import anyio

from ._errors import CuratorError, StatusCode
from ._proto.metropolis.node.core.curator.proto.api import Node, WatchRequest
from ._proto.metropolis.proto import common
from ._proto.version import spec
from ._tls import server_ssl_context
from ._transport import WatchServer, serve_watch
from ._core.wire import encode_watch_event

__all__ = [
    "AuthorizePolicy",
    "FakeCurator",
    "encode_watch_event",
    "make_node",
    "open_fake_curator",
    "run_churn",
    "server_ssl_context",
]

AuthorizePolicy: TypeAlias = Callable[[Mapping[str, Any] | None], CuratorError | None]
"""Decides whether the fake serves a call: given the client's verified certificate
(as :meth:`ssl.SSLSocket.getpeercert` gives it; None over plain text or when the client
presented none), returns None to serve it or the :class:`CuratorError` to refuse it
with."""

# A real Curator keeps each backlog message near or under 2 MiB.
_DEFAULT_MESSAGE_BYTES = 2 * 1024 * 1024
# How long open calls get to end cleanly when the fake shuts down (seconds).
_SHUTDOWN_GRACE = 1.0


def make_node(
    index: int,
    *,
    state: common.NodeState = common.NodeState.UP,
    address: str | None = None,
    worker: bool = True,
    controller: bool = False,
    consensus: bool = False,
    curator_port: int | None = None,
    labels: Mapping[str, str] | None = None,
) -> Node:
    """A realistic node, the same for the same arguments.

    Args:
        index: Picks the node's id, address, keys and prefix.
        state: The node's state.
        address: Its external address; defaults to one derived from ``index``.
        worker: Whether it has the Kubernetes worker role.
        controller: Whether it has the Kubernetes controller role.
        consensus: Whether it is a consensus member.
        curator_port: Set when the node runs a Curator.
        labels: Its labels; defaults to a rack and a zone.
    """
    if address is None:
        address = f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}"
    roles = common.NodeRoles(
        kubernetes_worker=common.NodeRolesKubernetesWorker() if worker else None,
        kubernetes_controller=common.NodeRolesKubernetesController() if controller else None,
        consensus_member=common.NodeRolesConsensusMember(
            ca_certificate=b"\x30\x82" + index.to_bytes(8, "big"),
            peer_certificate=b"\x30\x82" + (index + 1).to_bytes(8, "big"),
        )
        if consensus
        else None,
    )
    if labels is None:
        labels = {"rack": f"r{index % 16}", "zone": f"z{index % 3}"}
    key = index.to_bytes(32, "big")
    return Node(
        id=f"metropolis-{index:032x}",
        roles=roles,
        status=common.NodeStatus(
            external_address=address,
            timestamp=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
            + datetime.timedelta(seconds=index),
            running_curator=None
            if curator_port is None
            else common.NodeStatusRunningCurator(port=curator_port),
            version=spec.Version(
                release=spec.VersionRelease(major=0, minor=3, patch=1),
                git_information=spec.VersionGitInformation(
                    commit_hash="5fb8a3f0c1d2e3f4",
                    build_tree_state=spec.VersionGitInformationBuildTreeState.CLEAN,
                ),
            ),
            boot_id=key[:16],
        ),
        clusternet=common.NodeClusterNetworking(
            wireguard_pubkey=base64.b64encode(key).decode("ascii"),
            prefixes=[common.NodeClusterNetworkingPrefix(cidr=f"10.192.{index & 255}.0/24")],
        ),
        state=state,
        labels=common.NodeLabels(
            pairs=[common.NodeLabelsPair(key=k, value=v) for k, v in labels.items()]
        ),
    )


class _Session:
    """One Watch call being served: a queue of messages and a waker."""

    def __init__(self, fake: FakeCurator, node_id: str | None, allowance: int | None) -> None:
        self._fake = fake
        self.node_id = node_id
        # How many more messages it may send while the fake stalls; None: no stall.
        self.allowance = allowance
        # Ended by the fake dropping its connection, not by the client.
        self.dropped = False
        self._queue: list[bytes | CuratorError] = []
        self._waker: Callable[[], None] | None = None

    def push(self, item: bytes | CuratorError) -> None:
        self._queue.append(item)
        self._wake()

    def take(self) -> list[bytes | CuratorError]:
        if self.allowance is None:
            items, self._queue = self._queue, []
        else:
            items, self._queue = self._queue[: self.allowance], self._queue[self.allowance :]
            self.allowance -= len(items)
        return items

    def allow(self, allowance: int | None) -> None:
        self.allowance = allowance
        self._wake()

    def _wake(self) -> None:
        if self._waker is not None:
            self._waker()

    def set_waker(self, waker: Callable[[], None]) -> None:
        self._waker = waker
        if self._queue:
            waker()

    def close(self, cancelled: bool) -> None:
        self._fake._session_closed(self, cancelled)


class FakeCurator:
    """An in-memory cluster served over gRPC; make one with :func:`open_fake_curator`.

    Fault controls, to see how clients cope (each documented below):

    * in the Watch calls: :meth:`fail_streams` (end them with a status),
      :meth:`send_raw` (send any bytes as a message), :meth:`stall` and
      :meth:`resume` (stop sending, the connection staying healthy);
    * in the network, once serving: :meth:`freeze` and :meth:`thaw` (a silent
      partition), :meth:`drop_connections` (as if the process were killed),
      :meth:`refuse_connections` and :meth:`accept_connections` (nothing listening
      on the port, then the same port again), :meth:`restart` (both at once).

    The cluster survives every fault: a client that reconnects gets a backlog of
    the current cluster.

    Attributes:
        host: The address the server listens on.
        port: The port it listens on (the same across restarts).
        streams_opened: How many Watch calls have been accepted.
        streams_cancelled: How many of them the client cancelled.
        streams_dropped: How many of them ended because the fake dropped their
            connection (:meth:`drop_connections`, :meth:`refuse_connections`,
            :meth:`restart`, or a frozen fake exiting).
        streams_refused: How many Watch calls ``authorize`` refused.
        authorize: None serves every call (the default). Else an
            :data:`AuthorizePolicy`, asked before each new call, like a Curator's
            authorization check; calls already open are not affected. For example,
            to answer like a Curator asked by a client without the permission::

                fake.authorize = lambda cert: CuratorError(
                    StatusCode.PERMISSION_DENIED, "not an owner"
                )

            With mutual TLS, the TLS handshake itself already refuses clients
            without a valid certificate from the client CA (see
            :func:`server_ssl_context`); the policy sees only the others.
    """

    def __init__(
        self,
        *,
        backlog_nodes_per_event: int | None = None,
        max_message_bytes: int = _DEFAULT_MESSAGE_BYTES,
        shuffle_seed: int | None = 0,
        spurious_nodes: bool = False,
    ) -> None:
        self.host = ""
        self.port = 0
        self.streams_opened = 0
        self.streams_cancelled = 0
        self.streams_dropped = 0
        self.streams_refused = 0
        self.authorize: AuthorizePolicy | None = None
        self._backlog_nodes_per_event = backlog_nodes_per_event
        self._max_message_bytes = max_message_bytes
        self._random = random.Random(shuffle_seed)
        self._spurious_nodes = spurious_nodes
        self._nodes: dict[str, Node] = {}
        self._raw: dict[str, bytes] = {}
        self._sessions: set[_Session] = set()
        self._idle: anyio.Event | None = None
        # Messages each call may still send while stalled; None: not stalled.
        self._stall_allowance: int | None = None
        self._server: WatchServer | None = None

    @property
    def nodes(self) -> Mapping[str, Node]:
        """The cluster: node id to node (read-only; change it with the methods below)."""
        return self._nodes

    @property
    def active_streams(self) -> int:
        """How many Watch calls are being served now."""
        return len(self._sessions)

    @property
    def connections_accepted(self) -> int:
        """How many connections the server has accepted (across restarts)."""
        return self._serving.connections_accepted

    @property
    def open_connections(self) -> int:
        """How many connections are open now."""
        return self._serving.open_connections

    @property
    def listening(self) -> bool:
        """Whether the server accepts connections (false after :meth:`refuse_connections`)."""
        return self._serving.listening

    @property
    def stalled(self) -> bool:
        """Whether :meth:`stall` is in force."""
        return self._stall_allowance is not None

    @property
    def frozen(self) -> bool:
        """Whether :meth:`freeze` is in force."""
        return self._serving.frozen

    def put(self, *nodes: Node) -> None:
        """Create or update ``nodes``, announced in one event."""
        self.change(put=nodes)

    def delete(self, *node_ids: str) -> None:
        """Delete nodes, announced in one event (unknown ids are ignored)."""
        self.change(delete=node_ids)

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

        While stalled, the status waits its turn like a message.
        """
        for session in self._sessions:
            session.push(CuratorError(status, details))

    def send_raw(self, data: bytes, *, node_id: str | None = None) -> int:
        """Send ``data`` as it is, as one message, on open Watch calls.

        For hostile input: undecodable bytes, or events a Curator never sends, built
        with :func:`encode_watch_event` (duplicate ids, a node and its tombstone,
        tombstones for unknown ids, a second ``LAST_BACKLOGGED``). The fake's
        cluster does not change. There is no size limit: a message of 64 MiB, for
        example, is ``encode_watch_event([bytes(node)] * 330_000)``.

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

        Changes are queued meanwhile. Only the calls stall: connections stay
        healthy and answer HTTP/2 pings, so keepalive does not notice.

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

    def freeze(self, *, new_connections: bool = True) -> None:
        """Go silent on every connection, without closing any, until :meth:`thaw`.

        A silent network partition: the server neither reads nor sends, so a
        client's HTTP/2 keepalive pings go unanswered, while the TCP connections
        stay established. Calls go on being served into held-back buffers (within
        the client's flow-control window) and changes are queued. A frozen fake
        that exits drops its connections.

        Over TLS the server still notices a client that closes its connection
        meanwhile (the TLS layer keeps reading below the frozen HTTP/2 layer); over
        plain text it notices only on :meth:`thaw`. Clients see the same silence.

        Args:
            new_connections: Freeze connections accepted while frozen as well (the
                TCP handshake completes, then silence). False lets a client that
                reconnects get through.
        """
        self._serving.freeze(new_connections=new_connections)

    def thaw(self) -> None:
        """End :meth:`freeze`: send what was held back and read again.

        A connection whose client gave up meanwhile is then found closed and its
        calls end.
        """
        self._serving.thaw()

    def drop_connections(self) -> None:
        """Abort every connection at once, as if the Curator's process were killed.

        No trailers, no GOAWAY: clients see their connection lost. The fake keeps
        listening.
        """
        self._mark_dropped()
        self._serving.drop_connections()

    async def refuse_connections(self) -> None:
        """Stop listening and drop every connection, until :meth:`accept_connections`.

        Connection attempts meanwhile are refused, as with a Curator that is down.
        """
        self._mark_dropped()
        await self._serving.refuse_connections()

    async def accept_connections(self) -> None:
        """Listen again, on the same port, after :meth:`refuse_connections`.

        Raises:
            OSError: The port was taken meanwhile.
        """
        await self._serving.accept_connections()

    async def restart(self) -> None:
        """Drop every connection and listen again on the same port, with the same cluster.

        Like a Curator's process killed and started again.
        """
        self._mark_dropped()
        await self._serving.restart()

    async def wait_idle(self) -> None:
        """Return once no Watch call is being served."""
        while self._sessions:
            # One event for every waiter: a new one per waiter would strand the others.
            if self._idle is None or self._idle.is_set():
                self._idle = anyio.Event()
            await self._idle.wait()

    # Serving.

    def open_session(
        self, request: WatchRequest, *, peer_cert: Mapping[str, Any] | None = None
    ) -> _Session:
        """Start serving one Watch call (called by the server).

        Raises:
            CuratorError: ``authorize`` refused the call, or the request is invalid.
        """
        if self.authorize is not None:
            refusal = self.authorize(peer_cert)
            if refusal is not None:
                self.streams_refused += 1
                raise refusal
        if request.nodes_in_cluster is not None:
            session = _Session(self, None, self._stall_allowance)
            for message in self._backlog():
                session.push(message)
        elif request.node_in_cluster is not None:
            node_id = request.node_in_cluster.node_id
            if not node_id:
                raise CuratorError(StatusCode.INVALID_ARGUMENT, "node_id is empty")
            session = _Session(self, node_id, self._stall_allowance)
            if node_id in self._raw:
                session.push(encode_watch_event(self._node_event_raw(node_id), []))
        else:
            raise CuratorError(StatusCode.UNIMPLEMENTED, "unknown watch kind")
        self._sessions.add(session)
        self.streams_opened += 1
        return session

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
            size += len(raw) + 8
        messages.append(encode_watch_event(chunk, [], last_backlogged=True))
        return messages

    @property
    def _serving(self) -> WatchServer:
        if self._server is None:
            raise RuntimeError("the fake Curator is not serving (see open_fake_curator)")
        return self._server

    def _mark_dropped(self) -> None:
        # Every connection goes, and with it every call.
        for session in self._sessions:
            session.dropped = True

    def _session_closed(self, session: _Session, cancelled: bool) -> None:
        self._sessions.discard(session)
        if session.dropped:
            self.streams_dropped += 1
        elif cancelled:
            self.streams_cancelled += 1
        if not self._sessions and self._idle is not None:
            self._idle.set()


@contextlib.asynccontextmanager
async def open_fake_curator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl: _ssl.SSLContext | None = None,
    backlog_nodes_per_event: int | None = None,
    max_message_bytes: int = _DEFAULT_MESSAGE_BYTES,
    shuffle_seed: int | None = 0,
    spurious_nodes: bool = False,
) -> AsyncIterator[FakeCurator]:
    """Run a fake Curator until the block ends.

    Args:
        host: Address to listen on (keep it on loopback).
        port: Port to listen on; 0 picks a free one.
        ssl: A server TLS context; None serves plain text. For mutual TLS like a
            Curator's, ``server_ssl_context(cert, key, client_ca=ca)``.
        backlog_nodes_per_event: At most this many nodes per backlog event (to get a
            backlog split over many events with a small cluster).
        max_message_bytes: Keep backlog events near or under this size.
        shuffle_seed: Seeds the shuffling of the backlog; None for a random seed.
        spurious_nodes: NodeInCluster events also carry other nodes.

    Yields:
        The fake Curator, already serving. On exit, open calls end with
        ``UNAVAILABLE`` (a stall ends first) before the server stops and closes its
        connections; a frozen fake drops them instead.
    """
    fake = FakeCurator(
        backlog_nodes_per_event=backlog_nodes_per_event,
        max_message_bytes=max_message_bytes,
        shuffle_seed=shuffle_seed,
        spurious_nodes=spurious_nodes,
    )
    async with serve_watch(fake, host, port, ssl=ssl) as server:
        fake.host, fake.port = server.host, server.port
        fake._server = server
        try:
            yield fake
        finally:
            fake._server = None
            if server.frozen:
                # Nothing gets through a partition: the connections just go.
                fake._mark_dropped()
                server.drop_connections()
            else:
                # End calls with a status: stopping the server alone would cancel
                # them without trailers, and clients would hang until TCP gives up.
                fake.resume()
                fake.fail_streams(StatusCode.UNAVAILABLE, "the Curator is shutting down")
            with anyio.CancelScope(shield=True), anyio.move_on_after(_SHUTDOWN_GRACE):
                await fake.wait_idle()


async def run_churn(
    fake: FakeCurator,
    *,
    changes_per_second: float = 5.0,
    target_nodes: int = 8,
    seed: int | None = None,
) -> None:
    """Keep changing the fake's cluster until cancelled, like a live cluster.

    Nodes join (as ``NEW``), come up, change address and leave, so that the
    cluster wanders around ``target_nodes`` nodes. A changed node keeps its roles
    and labels.

    Args:
        fake: The fake Curator to change.
        changes_per_second: How often to make a change.
        target_nodes: The cluster size to hover around.
        seed: Seeds the random choices; None for a random seed.
    """
    rng = random.Random(seed)
    next_index = max((int(i.rsplit("-", 1)[1], 16) for i in fake.nodes), default=0) + 1
    while True:
        await anyio.sleep(1 / changes_per_second)
        size = len(fake.nodes)
        roll = rng.random()
        # One change in five is a join or a leave, more likely towards the target.
        if size == 0 or (roll < 0.2 and rng.random() < target_nodes / (size + target_nodes)):
            fake.put(make_node(next_index, state=common.NodeState.NEW))
            next_index += 1
        elif roll < 0.2:
            fake.delete(rng.choice(sorted(fake.nodes)))
        else:
            node = fake.nodes[rng.choice(sorted(fake.nodes))]
            if node.state is not common.NodeState.UP:
                fake.put(dataclasses.replace(node, state=common.NodeState.UP))
            elif node.status is not None:
                address = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                status = dataclasses.replace(node.status, external_address=address)
                fake.put(dataclasses.replace(node, status=status))
