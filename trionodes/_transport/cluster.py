"""A connection to whichever node leads a Metropolis cluster now: :func:`open_cluster`.

Only the leader serves ``Curator.Watch``; every control-plane node serves
``CuratorLocal.GetCurrentLeader``. The cluster source asks the endpoints it knows who
leads, connects to the leader and checks that the server really is that node, and
keeps a ``GetCurrentLeader`` call open to it. Any sign that the leader changed (that
call ending, a Watch answered ``UNIMPLEMENTED`` by a node that no longer leads, a
dropped or refused connection) makes it forget the leader: the watch that saw the
sign fails with a :class:`ConnectionLost`, reconnects with its usual backoff, and the
next call looks the leader up again. Watches therefore never end because the leader
moved; they resync on the new leader.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager

import anyio

from .._core.endpoints import Endpoint, curator_endpoint, parse_endpoint
from .._core.wire import split_watch_event
from .._credentials import Credentials
from .._curator import Curator, RawStream
from .._errors import (
    ConnectionLost,
    CuratorError,
    StatusCode,
    TLSError,
    TrionodesError,
)
from .._groups import sole_exception
from .._proto.metropolis.node.core.curator.proto.api import (
    GetCurrentLeaderRequest,
    GetCurrentLeaderResponse,
    WatchRequest,
)
from .bridge import Bridge, open_bridge
from .client import DEFAULT_MAX_MESSAGE_BYTES, Connection, MessageStream, make_channel
from .codec import GET_CURRENT_LEADER_PATH
from .grpclib_private import configuration

_log = logging.getLogger("trionodes")

# How long a node may take to say who leads (seconds).
_ANSWER_TIMEOUT = 5.0

# Statuses that say nothing about who leads: retrying elsewhere cannot help.
_NOT_ABOUT_THE_LEADER = frozenset(
    {StatusCode.PERMISSION_DENIED, StatusCode.UNAUTHENTICATED, StatusCode.INVALID_ARGUMENT}
)


@dataclasses.dataclass(frozen=True)
class Leader:
    """The node that leads a cluster, as a control-plane node told it.

    Attributes:
        node_id: The leader's node id.
        endpoint: Where it serves the Curator.
        told_by: The node that answered.
    """

    node_id: str
    endpoint: Endpoint
    told_by: str

    __module__ = "trionodes"


class _ClusterSource:
    """Watch calls to the current leader of a cluster; a :class:`StreamSource`."""

    def __init__(
        self,
        bridge: Bridge,
        endpoints: Sequence[Endpoint],
        credentials: Credentials | None,
        keepalive: float | None,
        keepalive_timeout: float,
        max_message_bytes: int,
    ) -> None:
        self._bridge = bridge
        self._given = list(dict.fromkeys(endpoints))
        self._learned: dict[Endpoint, None] = {}
        self._credentials = credentials
        self._ssl = None if credentials is None else credentials._client_context()
        self._keepalive = keepalive
        # Slower pings for the servers that refused them as too frequent: for good.
        self._keepalive_by_endpoint: dict[Endpoint, float] = {}
        self._keepalive_timeout = keepalive_timeout
        self._max_message_bytes = max_message_bytes
        self._leader: Connection | None = None
        self._looking = anyio.Lock()
        self._leader_known = anyio.Event()
        self._retired: list[Connection] = []
        # The GetCurrentLeader call to the leader: cancelled when it is forgotten.
        self._following = anyio.CancelScope()
        self.closed = False

    # StreamSource.

    @property
    def host(self) -> str:
        return self._leader.host if self._leader is not None else self._given[0].host

    @property
    def port(self) -> int:
        return self._leader.port if self._leader is not None else self._given[0].port

    @property
    def leader_id(self) -> str | None:
        return None if self._leader is None else self._leader.leader_id

    @contextlib.asynccontextmanager
    async def open_stream(self, request: WatchRequest) -> AsyncIterator[RawStream]:
        leader = await self._leader_connection()
        async with leader.open_stream(request) as stream:
            yield _LeaderStream(self, leader, stream, learn=request.nodes_in_cluster is not None)

    @property
    def endpoints(self) -> list[Endpoint]:
        """Every endpoint known: those given, then those learned from the cluster."""
        return self._given + [e for e in self._learned if e not in self._given]

    # Finding the leader.

    async def _leader_connection(self) -> Connection:
        if self.closed:
            raise RuntimeError(
                "the cluster connection is closed: its `async with open_cluster(...)` "
                "block has ended"
            )
        async with self._looking:
            if self._leader is None:
                leader = await self.find_leader()
                self._leader = await self._connect(leader.endpoint, leader.node_id)
                self._leader.leader_id = leader.node_id
                self._leader_known.set()
                _log.info(
                    "the cluster's leader is %s at %s (told by %s)",
                    leader.node_id,
                    leader.endpoint,
                    leader.told_by,
                )
            return self._leader

    async def find_leader(self) -> Leader:
        """Ask the known endpoints in turn who leads, until one says.

        Raises:
            TLSError: No node could be verified as a node of the cluster.
            ConnectionLost: No node said who leads.
        """
        failures: list[tuple[Endpoint, TrionodesError]] = []
        for endpoint in self.endpoints:
            try:
                leader = await self._ask(endpoint)
            except TrionodesError as exc:
                failures.append((endpoint, exc))
                continue
            if leader is not None:
                return leader
            failures.append((endpoint, ConnectionLost("it does not know the leader")))
        details = "; ".join(f"{endpoint}: {error}" for endpoint, error in failures)
        if failures and all(type(error) is TLSError for _, error in failures):
            raise TLSError(f"no node could be verified as a node of the cluster: {details}")
        if failures and all(
            isinstance(error, ConnectionLost) and error.maybe_tls for _, error in failures
        ):
            # Counted like any TLS-looking close: a few in a row end the watch.
            raise ConnectionLost(
                f"every node closed the connection at once: {details}", maybe_tls=True
            )
        raise ConnectionLost(f"no control-plane node said who leads the cluster: {details}")

    async def _ask(self, endpoint: Endpoint) -> Leader | None:
        connection = await self._connect(endpoint, None)
        try:
            async with connection.open_call(
                GET_CURRENT_LEADER_PATH, GetCurrentLeaderRequest()
            ) as stream:
                with anyio.fail_after(_ANSWER_TIMEOUT):
                    answer = GetCurrentLeaderResponse.parse(await stream.receive())
        except anyio.EndOfStream:
            return None
        except TimeoutError:
            raise ConnectionLost(f"no answer in {_ANSWER_TIMEOUT:g} s") from None
        finally:
            await connection.aclose()
        if not answer.leader_node_id or not 0 < answer.leader_port < 65536:
            return None
        host = answer.leader_host or endpoint.host
        told_by = answer.this_node_id or str(endpoint)
        return Leader(answer.leader_node_id, Endpoint(host, answer.leader_port), told_by)

    async def _connect(self, endpoint: Endpoint, node_id: str | None) -> Connection:
        """A connection to ``endpoint``, whose server must prove to be ``node_id``.

        None accepts any node of the cluster.
        """
        credentials = self._credentials
        verify: Callable[[bytes], None] | None = None
        if credentials is not None:

            def verify(der: bytes) -> None:
                # Not of this cluster: TLSError, retrying cannot help. Of this cluster
                # but another node: the leader may just have moved.
                credentials._verify_server(der, None)
                if node_id is not None:
                    try:
                        credentials._verify_server(der, node_id)
                    except TLSError as exc:
                        raise ConnectionLost(
                            f"{endpoint} is not the leader {node_id} any more ({exc})"
                        ) from None

        config = configuration(
            node_id if self._ssl is not None else None,
            self._keepalive_by_endpoint.get(endpoint, self._keepalive),
            self._keepalive_timeout,
        )

        def remember(interval: float) -> None:
            self._keepalive_by_endpoint[endpoint] = interval

        channel = await self._bridge.run(
            make_channel, endpoint.host, endpoint.port, self._ssl, config, verify, remember
        )
        return Connection(
            self._bridge,
            channel,
            endpoint.host,
            endpoint.port,
            self._max_message_bytes,
            "open_cluster",
        )

    def forget(self, leader: Connection, why: TrionodesError) -> None:
        """``leader`` may lead no more: look the leader up again at the next call."""
        if self._leader is not leader:
            return
        _log.info("no longer following %s as the leader: %s", leader.leader_id, why)
        self._leader = None
        self._leader_known = anyio.Event()
        self._retired.append(leader)
        self._following.cancel()

    def learn(self, raw_nodes: Iterable[bytes]) -> None:
        """Note the Curator endpoints that nodes advertise."""
        for raw in raw_nodes:
            endpoint = curator_endpoint(raw)
            if endpoint is not None and endpoint not in self._learned:
                self._learned[endpoint] = None

    # Following the leader.

    async def follow_leader(self) -> None:
        """Keep a ``GetCurrentLeader`` call open to the leader; forget it when it moves."""
        while True:
            await self._close_retired()
            await self._leader_known.wait()
            leader = self._leader
            if leader is None:
                continue
            with anyio.CancelScope() as self._following:
                await self._follow(leader)

    async def _follow(self, leader: Connection) -> None:
        try:
            async with leader.open_call(
                GET_CURRENT_LEADER_PATH, GetCurrentLeaderRequest()
            ) as stream:
                while True:
                    answer = GetCurrentLeaderResponse.parse(await stream.receive())
                    if answer.leader_node_id != leader.leader_id:
                        moved = ConnectionLost(f"the leader is now {answer.leader_node_id}")
                        self.forget(leader, moved)
        except anyio.EndOfStream:
            self.forget(leader, ConnectionLost(f"{leader.where} ended its leader call"))
        except TrionodesError as exc:
            self.forget(leader, exc)

    async def _close_retired(self) -> None:
        retired, self._retired = self._retired, []
        for connection in retired:
            await connection.aclose()

    async def aclose(self) -> None:
        """Close every connection (shielded)."""
        self.closed = True
        if self._leader is not None:
            self._retired.append(self._leader)
            self._leader = None
        with anyio.CancelScope(shield=True):
            await self._close_retired()


def _ask_who_leads(connection: Connection) -> AbstractAsyncContextManager[MessageStream]:
    """A GetCurrentLeader call: who leads, then (from a follower) who leads next."""
    return connection.open_call(GET_CURRENT_LEADER_PATH, GetCurrentLeaderRequest())


class _LeaderStream:
    """A Watch call to the leader, that tells the source what it learns of the cluster."""

    def __init__(
        self, source: _ClusterSource, leader: Connection, stream: RawStream, *, learn: bool
    ) -> None:
        self._source = source
        self._leader = leader
        self._stream = stream
        # Curator endpoints are learned from each backlog: the whole cluster.
        self._learning = learn

    async def receive(self) -> bytes:
        try:
            message = await self._stream.receive()
        except CuratorError as exc:
            if exc.status in _NOT_ABOUT_THE_LEADER:
                raise
            if exc.status is StatusCode.UNIMPLEMENTED:
                error: TrionodesError = ConnectionLost(
                    f"{self._leader.where} no longer leads the cluster (it answered "
                    f"UNIMPLEMENTED: {exc.details}); looking the leader up again"
                )
                self._source.forget(self._leader, error)
                raise error from exc
            self._source.forget(self._leader, exc)
            raise
        except TrionodesError as exc:
            self._source.forget(self._leader, exc)
            raise
        if self._learning:
            event = split_watch_event(message)
            self._source.learn(raw for _, raw in event.nodes)
            self._learning = not event.last_backlogged
        return message


def _endpoints(endpoints: Iterable[str | Endpoint]) -> list[Endpoint]:
    parsed = [e if isinstance(e, Endpoint) else parse_endpoint(e) for e in endpoints]
    if not parsed:
        raise ValueError("open_cluster needs at least one endpoint")
    return parsed


@contextlib.asynccontextmanager
async def open_cluster(
    endpoints: Iterable[str],
    *,
    credentials: Credentials | None = None,
    keepalive: float | None = 10.0,
    keepalive_timeout: float = 5.0,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> AsyncIterator[Curator]:
    """Connect to a Metropolis cluster: to whichever control-plane node leads it now.

    Example::

        credentials = trionodes.Credentials.from_metroctl()
        endpoints = ["10.0.0.1", "10.0.0.2"]
        async with trionodes.open_cluster(endpoints, credentials=credentials) as curator:
            async with trio.open_nursery() as nursery:
                await nursery.start(trionodes.watch_nodes, curator, follower)

    The leader is found by asking the endpoints, in the order given and then those
    learned from the cluster's nodes (``status.running_curator``), through
    ``CuratorLocal.GetCurrentLeader``; its server is checked to be the node named
    before anything is sent. When the leader moves, open watches reconnect to the
    new one and resync: one ``RESYNC`` batch with what really changed. No watch
    ends because the leader moved.

    Args:
        endpoints: Control-plane nodes, as ``host`` or ``host:port`` (port 7835 by
            default; an IPv6 address in brackets).
        credentials: The cluster CA and a client certificate; None for plain text
            (test clusters only: a real cluster speaks TLS).
        keepalive: Seconds between HTTP/2 pings while a call is open; None sends
            none. 10 s, as Metropolis's own clients ping (a Curator accepts a ping a
            second). A server that refuses pings as too frequent (GOAWAY
            ``too_many_pings``) gets them half as often from then on.
        keepalive_timeout: Seconds to wait for a ping's answer before the
            connection is taken for dead.
        max_message_bytes: A received message larger than this fails its call.

    Yields:
        The connection, for every watch function. ``curator.leader_id`` names the
        leader when known.

    Raises:
        EndpointError: An endpoint is not ``host`` or ``host:port``.
        ValueError: No endpoint, or a setting out of range.
    """
    parsed = _endpoints(endpoints)
    if max_message_bytes <= 0:
        raise ValueError("max_message_bytes must be positive")
    try:
        configuration(None, keepalive, keepalive_timeout)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad keepalive settings: {exc}") from None
    async with open_bridge() as bridge:
        source = _ClusterSource(
            bridge, parsed, credentials, keepalive, keepalive_timeout, max_message_bytes
        )
        try:
            with sole_exception():
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(source.follow_leader)
                    yield Curator._over(source)
                    tasks.cancel_scope.cancel()
        finally:
            await source.aclose()


async def find_leader(
    endpoints: Iterable[str], *, credentials: Credentials | None = None
) -> Leader:
    """Ask the endpoints who leads the cluster, as :func:`open_cluster` does, once.

    Args:
        endpoints: Control-plane nodes, as ``host`` or ``host:port`` (port 7835).
        credentials: The cluster CA (a client certificate is not needed); None for
            plain text.

    Raises:
        EndpointError: An endpoint is not ``host`` or ``host:port``.
        TLSError: No node could be verified as a node of the cluster.
        ConnectionLost: No node said who leads.
    """
    parsed = _endpoints(endpoints)
    async with open_bridge() as bridge:
        source = _ClusterSource(bridge, parsed, credentials, None, 5.0, DEFAULT_MAX_MESSAGE_BYTES)
        try:
            return await source.find_leader()
        finally:
            await source.aclose()
