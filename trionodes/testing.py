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
from ._transport import serve_watch
from ._wire import encode_watch_event

__all__ = [
    "AuthorizePolicy",
    "FakeCurator",
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

    def __init__(self, fake: FakeCurator, node_id: str | None) -> None:
        self._fake = fake
        self.node_id = node_id
        self._queue: list[bytes | CuratorError] = []
        self._waker: Callable[[], None] | None = None

    def push(self, item: bytes | CuratorError) -> None:
        self._queue.append(item)
        if self._waker is not None:
            self._waker()

    def take(self) -> list[bytes | CuratorError]:
        items, self._queue = self._queue, []
        return items

    def set_waker(self, waker: Callable[[], None]) -> None:
        self._waker = waker
        if self._queue:
            waker()

    def close(self, cancelled: bool) -> None:
        self._fake._session_closed(self, cancelled)


class FakeCurator:
    """An in-memory cluster served over gRPC; make one with :func:`open_fake_curator`.

    Attributes:
        host: The address the server listens on.
        port: The port it listens on.
        streams_opened: How many Watch calls have been accepted.
        streams_cancelled: How many of them the client cancelled.
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

    @property
    def nodes(self) -> Mapping[str, Node]:
        """The cluster: node id to node (read-only; change it with the methods below)."""
        return self._nodes

    @property
    def active_streams(self) -> int:
        """How many Watch calls are being served now."""
        return len(self._sessions)

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
        """End every open Watch call with ``status``, after what was already queued."""
        for session in self._sessions:
            session.push(CuratorError(status, details))

    async def wait_idle(self) -> None:
        """Return once no Watch call is being served."""
        while self._sessions:
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
            session = _Session(self, None)
            for message in self._backlog():
                session.push(message)
        elif request.node_in_cluster is not None:
            node_id = request.node_in_cluster.node_id
            if not node_id:
                raise CuratorError(StatusCode.INVALID_ARGUMENT, "node_id is empty")
            session = _Session(self, node_id)
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

    def _session_closed(self, session: _Session, cancelled: bool) -> None:
        self._sessions.discard(session)
        if cancelled:
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
        ``UNAVAILABLE`` before the server stops.
    """
    fake = FakeCurator(
        backlog_nodes_per_event=backlog_nodes_per_event,
        max_message_bytes=max_message_bytes,
        shuffle_seed=shuffle_seed,
        spurious_nodes=spurious_nodes,
    )
    async with serve_watch(fake, host, port, ssl=ssl) as server:
        fake.host, fake.port = server.host, server.port
        try:
            yield fake
        finally:
            # End calls with a status: stopping the server alone would cancel them
            # without trailers, and clients would hang until TCP gives up.
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
