"""The fake control plane: several real gRPC servers sharing one cluster, one leader.

Each member is a control-plane node of the cluster, listening on its own port of
127.0.0.1, and serves what a real one serves (see the spec of a Metropolis control
plane):

* ``CuratorLocal.GetCurrentLeader``, on every member. The leader answers with itself
  once and then idles; a follower answers with the leader, again whenever the
  leader changes, and ends the call with ``UNAVAILABLE`` when it stops being a
  follower.
* ``Curator.Watch`` on the leader only, from the shared cluster model. A follower
  answers it ``UNIMPLEMENTED`` "unknown service ...", as a gRPC server answers for a
  service it does not have. With TLS, Watch needs exactly one client certificate
  from the cluster CA (``UNAUTHENTICATED`` otherwise).

A leadership change stops the old leader's server hard (connections just drop) and
brings it back as a follower on the same port; the followers restart their
listeners too, dropping their connections. What a member serves is fixed while it
listens: it changes only when its listener restarts, as a real node's does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .._credentials import Credentials
from .._errors import CuratorError, StatusCode
from .._proto.metropolis.node.core.curator.proto.api import (
    GetCurrentLeaderRequest,
    GetCurrentLeaderResponse,
    Node,
    WatchRequest,
)
from .._transport.codec import GET_CURRENT_LEADER_PATH, WATCH_PATH
from .._transport.server import (
    CURATOR_PING_POLICY,
    Peer,
    PingPolicy,
    StreamingMethod,
    WatchServer,
    WatchSession,
    serve_grpc,
)
from ._model import DEFAULT_MESSAGE_BYTES
from ._nodes import make_node
from ._served import ServedCluster

if TYPE_CHECKING:
    from ._pki import ClusterPKI, NodeIdentity

CURATOR_SERVICE = "metropolis.node.core.curator.proto.api.Curator"

# make_node indexes for the members' own nodes: far from the small indexes tests
# use for theirs, so that their addresses, keys and prefixes do not collide.
_MEMBER_NODE_INDEX = 0xC000
# How long a member that becomes the leader lets its GetCurrentLeader calls take
# their UNAVAILABLE before its listener restarts (seconds).
_ROLE_CHANGE_GRACE = 1.0


class _LeaderStream:
    """One GetCurrentLeader call being served: the answers it has yet to send."""

    def __init__(self, member: FakeMember) -> None:
        self._member = member
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
        self._member._leader_stream_closed(self)


class FakeMember:
    """One control-plane node of a :class:`FakeCluster`: a gRPC server on 127.0.0.1.

    Attributes:
        index: Its place in :attr:`FakeCluster.members`.
        node_id: Its node ID (with TLS, the one its certificate names).
        host: The address it listens on (``127.0.0.1``).
        port: The port it listens on, the same across restarts.
        server: Its server, for network faults (freeze, drop, GOAWAY, ...).
    """

    def __init__(self, cluster: FakeCluster, index: int, node_id: str) -> None:
        self._cluster = cluster
        self.index = index
        self.node_id = node_id
        self.host = "127.0.0.1"
        self.port = 0
        self._server: WatchServer | None = None
        # Whether its listener serves the Curator service: fixed while it listens.
        self._serves_curator = False
        self._leader_streams: set[_LeaderStream] = set()
        self._streams_ended: anyio.Event | None = None

    def __repr__(self) -> str:
        role = "leader" if self.is_leader else "follower"
        state = "up" if self.up else "down"
        return f"<FakeMember {self.index} {self.node_id} {self.endpoint} {role} {state}>"

    @property
    def server(self) -> WatchServer:
        """Its server (see :class:`WatchServer` for the network faults it offers)."""
        if self._server is None:
            raise RuntimeError("the fake cluster is not serving (see open_fake_cluster)")
        return self._server

    @property
    def endpoint(self) -> str:
        """``host:port``, as given to a client."""
        return f"{self.host}:{self.port}"

    @property
    def up(self) -> bool:
        """Whether it listens (false after :meth:`FakeCluster.stop_member`)."""
        return self._server is not None and self._server.listening

    @property
    def is_leader(self) -> bool:
        """Whether it is the cluster's leader."""
        return self._cluster._leader is self

    @property
    def leader_streams(self) -> int:
        """How many GetCurrentLeader calls it is serving now."""
        return len(self._leader_streams)

    def _answer(self) -> bytes:
        """What GetCurrentLeader says on this member now."""
        leader = self._cluster._leader
        return bytes(
            GetCurrentLeaderResponse(
                leader_node_id=leader.node_id,
                leader_host=leader.host,
                leader_port=leader.port,
                this_node_id=self.node_id,
            )
        )

    def _leader_stream_closed(self, stream: _LeaderStream) -> None:
        self._leader_streams.discard(stream)
        if not self._leader_streams and self._streams_ended is not None:
            self._streams_ended.set()

    async def _wait_leader_streams_ended(self) -> None:
        while self._leader_streams:
            self._streams_ended = anyio.Event()
            await self._streams_ended.wait()

    async def _listen_as_now(self) -> None:
        """Listen again, serving what its role says now."""
        self._serves_curator = self.is_leader
        await self.server.accept_connections()


class _MemberWatch:
    """Curator.Watch on one member: the cluster model if it serves the Curator."""

    def __init__(self, member: FakeMember) -> None:
        self._member = member

    def open_session(self, request: WatchRequest, peer: Peer) -> WatchSession:
        member = self._member
        if not member._serves_curator:
            raise CuratorError(StatusCode.UNIMPLEMENTED, f"unknown service {CURATOR_SERVICE}")
        cluster = member._cluster
        if cluster.pki is not None:
            _check_client(peer, cluster.pki)
        return cluster.open_session(request, peer_cert=peer.cert)


def _check_client(peer: Peer, pki: ClusterPKI) -> None:
    """Refuse a Watch as a Curator does, unless one client certificate of the cluster came.

    How many certificates were sent, Python can tell only from 3.13 on.
    """
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    if peer.cert_der is None:
        raise CuratorError(StatusCode.UNAUTHENTICATED, "no client certificate was sent")
    if peer.certificates_sent is not None and peer.certificates_sent != 1:
        raise CuratorError(
            StatusCode.UNAUTHENTICATED, "exactly one client certificate must be sent"
        )
    # The handshake has checked it against every CA the server trusts, which may
    # include another cluster's (trust_client_cas): check it is this cluster's.
    try:
        x509.load_der_x509_certificate(peer.cert_der).verify_directly_issued_by(pki.ca.certificate)
    except (ValueError, TypeError, InvalidSignature):
        raise CuratorError(
            StatusCode.UNAUTHENTICATED, "the client certificate is not from the cluster CA"
        ) from None


class _MemberLeaderLookup:
    """CuratorLocal.GetCurrentLeader on one member."""

    def __init__(self, member: FakeMember) -> None:
        self._member = member

    def open_session(self, request: GetCurrentLeaderRequest, peer: Peer) -> WatchSession:
        member = self._member
        stream = _LeaderStream(member)
        stream.push(member._answer())
        member._leader_streams.add(stream)
        return stream


class FakeCluster(ServedCluster):
    """A Metropolis control plane of several members sharing one cluster.

    Make one with :func:`open_fake_cluster`. Change the cluster with :meth:`put`,
    :meth:`delete` and :meth:`change`, fail or stall the leader's Watch calls with
    :meth:`fail_streams`, :meth:`stall` and :meth:`resume` (as on a fake Curator);
    move the leadership with :meth:`move_leader`, take members down and up with
    :meth:`stop_member` and :meth:`start_member`. Each member's server offers the
    network faults of :class:`WatchServer`.

    The members are nodes of the cluster too (consensus members and Kubernetes
    controllers, ``running_curator`` set to their port, external address
    ``127.0.0.1``), so a client can learn curator endpoints from the nodes.

    Attributes:
        pki: With TLS, the cluster's CA and certificates; None without.
        credentials: With TLS, the owner's credentials (read from
            :attr:`metroctl_dir`); None without.
        metroctl_dir: With TLS, a metroctl configuration directory for the owner
            (``ca.pem``, ``owner.pem``, ``owner-key.pem``), removed on exit.
        leader_moves: How many times :meth:`move_leader` has moved the leadership.
    """

    pki: ClusterPKI | None = None
    credentials: Credentials | None = None
    metroctl_dir: Path | None = None
    leader_moves = 0
    _members: tuple[FakeMember, ...] = ()
    _leader: FakeMember

    @property
    def members(self) -> Sequence[FakeMember]:
        """Every member, leader or not, up or down, in a fixed order."""
        return self._members

    @property
    def leader(self) -> FakeMember:
        """The member that leads now (it may be down)."""
        return self._leader

    @property
    def endpoints(self) -> list[str]:
        """Every member's ``host:port``, in :attr:`members` order."""
        return [member.endpoint for member in self._members]

    async def move_leader(self, to: int | None = None, *, restart_followers: bool = True) -> None:
        """Move the leadership to another member, as a real election does.

        The old leader's server stops hard (its connections drop, open calls get no
        status) and comes back as a follower on the same port. The new leader ends
        its GetCurrentLeader calls with ``UNAVAILABLE``, then restarts its listener
        to serve the Curator. Followers send the new leader on their
        GetCurrentLeader calls, then restart their listeners, dropping their
        connections.

        Args:
            to: The index of the new leader; None picks the next member that is up,
                after the leader in :attr:`members` order.
            restart_followers: False keeps the followers' connections (and their
                GetCurrentLeader calls) open: the leader change then reaches their
                clients only as a message.

        Raises:
            ValueError: ``to`` is the leader already, is down, or out of range; or no
                other member is up.
        """
        old = self._leader
        new = self._next_leader(to)
        self._leader = new
        self.leader_moves += 1
        self._mark_open_streams_dropped()
        if old.up:
            await old.server.refuse_connections()
            await old._listen_as_now()
        changed = CuratorError(StatusCode.UNAVAILABLE, "election status changed, try again")
        for stream in list(new._leader_streams):
            stream.push(changed)
        with anyio.move_on_after(_ROLE_CHANGE_GRACE):
            await new._wait_leader_streams_ended()
        await new.server.refuse_connections()
        await new._listen_as_now()
        for member in self._members:
            if member is old or member is new:
                continue
            for stream in member._leader_streams:
                stream.push(member._answer())
            if restart_followers and member.up:
                await member.server.restart()

    async def stop_member(self, index: int) -> None:
        """Take a member down: its connections drop, and nothing listens on its port.

        The leadership does not move (call :meth:`move_leader` for that): a stopped
        leader leaves the cluster without a Watch until it starts again or the
        leadership moves.
        """
        member = self._members[index]
        if member.is_leader:
            self._mark_open_streams_dropped()
        await member.server.refuse_connections()

    async def start_member(self, index: int) -> None:
        """Bring a member back up on its port, as the leader or a follower as it is now."""
        member = self._members[index]
        if not member.up:
            await member._listen_as_now()

    def _next_leader(self, to: int | None) -> FakeMember:
        if to is not None:
            if not 0 <= to < len(self._members):
                raise ValueError(
                    f"there is no member {to}: members are 0 to {len(self._members) - 1}"
                )
            member = self._members[to]
            if member is self._leader:
                raise ValueError(f"member {to} is the leader already")
            if not member.up:
                raise ValueError(f"member {to} is down: start it first")
            return member
        start = self._leader.index
        for step in range(1, len(self._members)):
            member = self._members[(start + step) % len(self._members)]
            if member.up:
                return member
        raise ValueError("no other member is up to take the leadership")


def _member_node(index: int, node_id: str, port: int) -> Node:
    node = make_node(
        _MEMBER_NODE_INDEX + index,
        address="127.0.0.1",
        controller=True,
        consensus=True,
        curator_port=port,
    )
    return dataclasses.replace(node, id=node_id)


def _plain_node_id(index: int) -> str:
    # Without TLS nothing derives the ID from a key; any stable 32 hex digits will do.
    digest = hashlib.sha256(f"trionodes fake member {index}".encode()).hexdigest()
    return f"metropolis-{digest[:32]}"


@contextlib.asynccontextmanager
async def open_fake_cluster(
    members: int = 3,
    *,
    tls: bool = True,
    keepalive_policy: PingPolicy | None = CURATOR_PING_POLICY,
    backlog_nodes_per_event: int | None = None,
    max_message_bytes: int = DEFAULT_MESSAGE_BYTES,
    shuffle_seed: int | None = 0,
    spurious_nodes: bool = False,
    trust_client_cas: Sequence[bytes] = (),
) -> AsyncIterator[FakeCluster]:
    """Run a fake Metropolis control plane on 127.0.0.1 until the block ends.

    Works from Trio and from asyncio. Member 0 leads at first::

        async with open_fake_cluster() as cluster:
            cluster.put(make_node(1), make_node(2))
            leader = cluster.leader
            async with trionodes.open_curator(
                leader.host, leader.port, ssl=cluster.credentials._client_context()
            ) as curator:
                ...

    Args:
        members: How many control-plane members (each its own server and port).
        tls: Serve TLS shaped like Metropolis's (see :class:`FakeCluster`); False
            serves plain text, with no client certificate checks.
        keepalive_policy: How often clients may ping each member: a real Curator's
            (the default, :data:`CURATOR_PING_POLICY`), gRPC's default servers'
            (:data:`GRPC_DEFAULT_PING_POLICY`), another, or None for no limit.
        backlog_nodes_per_event: At most this many nodes per backlog event.
        max_message_bytes: Keep backlog events near or under this size.
        shuffle_seed: Seeds the shuffling of the backlog; None for a random seed.
        spurious_nodes: NodeInCluster events also carry other nodes.
        trust_client_cas: With TLS, CA certificates (PEM) whose client certificates
            also pass the TLS handshake, for Watch to refuse with
            ``UNAUTHENTICATED`` as a Curator does (Python's ``ssl`` fails the
            handshake for a client certificate it cannot verify, where a Curator
            completes it).

    Yields:
        The cluster, every member serving, member 0 leading. On exit, open Watch
        calls end with ``UNAVAILABLE``, then every member stops and closes its
        connections, and the metroctl directory is removed.
    """
    if members < 1:
        raise ValueError("a cluster needs at least one member")
    cluster = FakeCluster(
        backlog_nodes_per_event=backlog_nodes_per_event,
        max_message_bytes=max_message_bytes,
        shuffle_seed=shuffle_seed,
        spurious_nodes=spurious_nodes,
    )
    identities: list[NodeIdentity] = []
    async with contextlib.AsyncExitStack() as stack:
        if tls:
            from ._pki import ClusterPKI  # cryptography, only when TLS is wanted

            cluster.pki = ClusterPKI()
            identities = [cluster.pki.node() for _ in range(members)]
            directory = Path(tempfile.mkdtemp(prefix="trionodes-metroctl-"))
            stack.callback(shutil.rmtree, directory, ignore_errors=True)
            cluster.metroctl_dir = cluster.pki.write_metroctl_dir(directory)
            cluster.credentials = Credentials.from_metroctl(directory)
        cluster._members = tuple(
            FakeMember(cluster, i, identities[i].node_id if tls else _plain_node_id(i))
            for i in range(members)
        )
        cluster._leader = cluster._members[0]
        for member in cluster._members:
            member._serves_curator = member.is_leader
            methods: dict[str, StreamingMethod[Any]] = {
                WATCH_PATH: StreamingMethod(WatchRequest, _MemberWatch(member)),
                GET_CURRENT_LEADER_PATH: StreamingMethod(
                    GetCurrentLeaderRequest, _MemberLeaderLookup(member)
                ),
            }
            ssl = (
                None
                if cluster.pki is None
                else cluster.pki.server_context(
                    identities[member.index], also_trust=trust_client_cas
                )
            )
            member._server = await stack.enter_async_context(
                serve_grpc(methods, member.host, 0, ssl=ssl, ping_policy=keepalive_policy)
            )
            member.port = member.server.port
        cluster.put(*(_member_node(m.index, m.node_id, m.port) for m in cluster._members))
        try:
            yield cluster
        finally:
            for member in cluster._members:
                if member.server.frozen:
                    # Nothing gets through a partition: the connections just go.
                    if member._serves_curator:
                        cluster._mark_open_streams_dropped()
                    member.server.drop_connections()
            await cluster._shut_down()
