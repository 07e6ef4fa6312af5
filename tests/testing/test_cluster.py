"""The fake control plane, against its real servers: roles, leader moves, members, TLS, pings.

GetCurrentLeader is read with a bare grpclib channel on a bridge (the library's own
lookup is under test elsewhere); Watch with ``trionodes.open_curator`` and bare
calls, whose streams do not reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import grpclib.client
import grpclib.config
import grpclib.const
import pytest
import trio

import trionodes
from trionodes import StatusCode
from trionodes._proto.metropolis.node.core.curator.proto.api import GetCurrentLeaderResponse
from trionodes._transport.bridge import Bridge, open_bridge
from trionodes._transport.codec import GET_CURRENT_LEADER_PATH, RawCodec, RawMessage
from trionodes._transport.errors import GoAway
from trionodes._transport.grpclib_private import TracedChannel, configuration
from trionodes.testing import (
    GRPC_DEFAULT_PING_POLICY,
    ClusterPKI,
    FakeCluster,
    FakeMember,
    PingPolicy,
    make_node,
    open_fake_cluster,
    settle,
)
from trionodes.testing._cluster import CURATOR_SERVICE

from .calls import ALL_NODES, receive_backlog

# Far longer than anything here takes; a hang fails instead of blocking the run.
TIMEOUT = 10


class LeaderCall:
    """One GetCurrentLeader call, read in the background over its own connection."""

    def __init__(self, member: FakeMember, *, keepalive: float | None = None) -> None:
        self._member = member
        self._keepalive = keepalive
        self.answers: list[GetCurrentLeaderResponse] = []
        self.error: Exception | None = None
        self.ended = False
        self.channel: TracedChannel | None = None
        self._changed = trio.Event()

    async def run(self, bridge: Bridge, ssl_context: ssl.SSLContext | None = None) -> None:
        """Make the call and read it until it ends, or until cancelled."""
        await bridge.run(self._call, bridge, ssl_context)

    async def wait(self, answers: int = 1) -> None:
        """Wait until ``answers`` answers came, or the call ended."""
        with trio.fail_after(TIMEOUT):
            while len(self.answers) < answers and not self.ended:
                self._changed = trio.Event()
                await self._changed.wait()

    async def _call(self, bridge: Bridge, ssl_context: ssl.SSLContext | None) -> None:
        # On the loop.
        self.channel = TracedChannel(
            self._member.host,
            self._member.port,
            ssl=ssl_context,
            codec=RawCodec(),
            # With TLS, the member is checked as its node, never as its address.
            config=configuration(
                None if ssl_context is None else self._member.node_id, self._keepalive, 5.0
            ),
        )
        try:
            async with self.channel.request(
                GET_CURRENT_LEADER_PATH,
                grpclib.const.Cardinality.UNARY_STREAM,
                RawMessage,
                RawMessage,
            ) as call:
                await call.send_message(cast(RawMessage, b""), end=True)
                while (message := await call.recv_message()) is not None:
                    bridge.to_host(
                        self._answered, GetCurrentLeaderResponse.parse(cast(bytes, message))
                    )
        except Exception as exc:
            bridge.to_host(self._ended, exc)
        else:
            bridge.to_host(self._ended, None)
        finally:
            await self.channel.aclose()

    def _answered(self, answer: GetCurrentLeaderResponse) -> None:
        self.answers.append(answer)
        self._changed.set()

    def _ended(self, error: Exception | None) -> None:
        self.ended = True
        self.error = error
        self._changed.set()


@contextlib.asynccontextmanager
async def leader_call(
    member: FakeMember,
    *,
    keepalive: float | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[LeaderCall]:
    """A GetCurrentLeader call on ``member``, open for the block."""
    call = LeaderCall(member, keepalive=keepalive)
    async with open_bridge() as bridge, trio.open_nursery() as nursery:
        nursery.start_soon(call.run, bridge, ssl_context)
        yield call
        nursery.cancel_scope.cancel()


def about(cluster: FakeCluster, leader: FakeMember, this: FakeMember) -> GetCurrentLeaderResponse:
    return GetCurrentLeaderResponse(
        leader_node_id=leader.node_id,
        leader_host="127.0.0.1",
        leader_port=leader.port,
        this_node_id=this.node_id,
    )


def status_of(error: Exception | None) -> grpclib.const.Status | None:
    return error.status if isinstance(error, grpclib.exceptions.GRPCError) else None


async def watch_error(
    member: FakeMember,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> Exception:
    """What a Watch on ``member`` fails with."""
    async with (
        trionodes.open_curator(
            member.host, member.port, ssl=ssl_context, server_hostname=server_hostname
        ) as curator,
        curator._open_stream(ALL_NODES) as stream,
    ):
        with trio.fail_after(TIMEOUT), pytest.raises(trionodes.TrionodesError) as caught:
            await stream.receive()
    return caught.value


async def backlog_of(member: FakeMember, ssl_context: ssl.SSLContext | None = None) -> list[str]:
    """The node ids a Watch on ``member`` sends as its backlog."""
    async with (
        trionodes.open_curator(member.host, member.port, ssl=ssl_context) as curator,
        curator._open_stream(ALL_NODES) as stream,
    ):
        with trio.fail_after(TIMEOUT):
            return await receive_backlog(stream)


async def assert_refused(member: FakeMember) -> None:
    sock = trio.socket.socket()
    with sock, pytest.raises(ConnectionRefusedError):
        await sock.connect((member.host, member.port))


# Roles.


async def test_followers_answer_watch_as_an_unknown_service() -> None:
    async with open_fake_cluster(tls=False) as cluster:
        assert [m.is_leader for m in cluster.members] == [True, False, False]
        for follower in cluster.members[1:]:
            error = await watch_error(follower)
            assert isinstance(error, trionodes.CuratorError)
            assert error.status is StatusCode.UNIMPLEMENTED
            assert error.details == f"unknown service {CURATOR_SERVICE}"
        assert cluster.streams_opened == 0


async def test_a_watch_of_changes_on_a_follower_ends_unimplemented() -> None:
    async with (
        open_fake_cluster(tls=False) as cluster,
        trionodes.open_curator("127.0.0.1", cluster.members[1].port) as curator,
    ):
        # Permanent today by default; said here so that the test does not hang on it.
        retry = trionodes.RetryPolicy(permanent_statuses=frozenset({StatusCode.UNIMPLEMENTED}))
        with trio.fail_after(TIMEOUT), pytest.raises(trionodes.CuratorError) as caught:
            async with trionodes.open_node_changes(curator, retry=retry) as changes:
                await changes.receive()
        assert caught.value.status is StatusCode.UNIMPLEMENTED


async def test_the_leader_serves_the_cluster_and_its_members_are_nodes_of_it() -> None:
    async with open_fake_cluster(tls=False, backlog_nodes_per_event=2) as cluster:
        cluster.put(make_node(1), make_node(2))
        ids = await backlog_of(cluster.leader)
        members = {m.node_id for m in cluster.members}
        assert sorted(ids) == sorted({make_node(1).id, make_node(2).id} | members)
        for member in cluster.members:
            node = cluster.nodes[member.node_id]
            assert node.status is not None
            assert node.status.external_address == "127.0.0.1"
            assert node.status.running_curator is not None
            assert node.status.running_curator.port == member.port
            assert node.roles is not None
            assert node.roles.consensus_member is not None
        assert cluster.endpoints == [f"127.0.0.1:{m.port}" for m in cluster.members]
        assert len(set(cluster.endpoints)) == 3


async def test_get_current_leader_from_the_leader_and_from_a_follower() -> None:
    async with open_fake_cluster(tls=False) as cluster:
        leader, follower = cluster.members[0], cluster.members[1]
        async with leader_call(leader) as on_leader, leader_call(follower) as on_follower:
            await on_leader.wait()
            await on_follower.wait()
            await settle()
            # Each answers once and keeps the call open.
            assert on_leader.answers == [about(cluster, leader, leader)]
            assert on_follower.answers == [about(cluster, leader, follower)]
            assert not on_leader.ended
            assert not on_follower.ended
            assert leader.leader_streams == follower.leader_streams == 1
        await settle()
        assert leader.leader_streams == follower.leader_streams == 0


# Leader moves.


async def test_move_leader_drops_every_connection_and_changes_who_serves_watch() -> None:
    async with open_fake_cluster(tls=False) as cluster:
        old = cluster.leader
        async with (
            trionodes.open_curator(old.host, old.port) as curator,
            curator._open_stream(ALL_NODES) as stream,
            leader_call(cluster.members[2]) as on_follower,
        ):
            await receive_backlog(stream)
            await on_follower.wait()
            await cluster.move_leader()
            # No status: the connections just dropped.
            with trio.fail_after(TIMEOUT), pytest.raises(trionodes.ConnectionLost):
                await stream.receive()
            await on_follower.wait(answers=99)
            assert on_follower.ended
            assert status_of(on_follower.error) is None
        assert cluster.streams_dropped == 1
        new = cluster.members[1]
        assert cluster.leader is new
        assert new.is_leader
        assert not old.is_leader
        assert cluster.leader_moves == 1
        assert old.up
        error = await watch_error(old)
        assert isinstance(error, trionodes.CuratorError)
        assert error.status is StatusCode.UNIMPLEMENTED
        assert len(await backlog_of(new)) == 3
        async with leader_call(cluster.members[2]) as on_follower:
            await on_follower.wait()
            assert on_follower.answers == [about(cluster, new, cluster.members[2])]


async def test_leader_changes_reach_followers_that_keep_their_connections() -> None:
    async with open_fake_cluster(tls=False) as cluster:
        first, second, third = cluster.members
        async with leader_call(third) as on_third, leader_call(second) as on_second:
            await on_third.wait()
            await on_second.wait()
            await cluster.move_leader(1, restart_followers=False)
            # The new leader stops being a follower: its call ends with UNAVAILABLE.
            await on_second.wait(answers=99)
            assert status_of(on_second.error) is grpclib.const.Status.UNAVAILABLE
            assert isinstance(on_second.error, grpclib.exceptions.GRPCError)
            assert on_second.error.message == "election status changed, try again"
            # A follower that stays one says who leads now, on the same call.
            await on_third.wait(answers=2)
            assert on_third.answers == [
                about(cluster, first, third),
                about(cluster, second, third),
            ]
            assert not on_third.ended
            await cluster.move_leader(0, restart_followers=False)
            await on_third.wait(answers=3)
            assert on_third.answers[-1] == about(cluster, first, third)


async def test_move_leader_refuses_impossible_moves() -> None:
    async with open_fake_cluster(members=2, tls=False) as cluster:
        with pytest.raises(ValueError, match="already"):
            await cluster.move_leader(0)
        with pytest.raises(ValueError, match="no member 5"):
            await cluster.move_leader(5)
        await cluster.stop_member(1)
        with pytest.raises(ValueError, match="down"):
            await cluster.move_leader(1)
        with pytest.raises(ValueError, match="no other member"):
            await cluster.move_leader()
        assert cluster.leader_moves == 0


# Members down and up.


async def test_a_stopped_member_refuses_connections_and_comes_back_in_its_role() -> None:
    async with open_fake_cluster(tls=False) as cluster:
        follower = cluster.members[2]
        await cluster.stop_member(2)
        assert not cluster.members[2].up
        await assert_refused(follower)
        # The leadership moves while it is down: it comes back a follower still.
        await cluster.move_leader(1)
        await cluster.stop_member(0)
        await cluster.start_member(2)
        assert follower.up
        assert not follower.is_leader
        async with leader_call(follower) as call:
            await call.wait()
            assert call.answers == [about(cluster, cluster.members[1], follower)]
        # The old leader, down, comes back as a follower.
        await cluster.start_member(0)
        error = await watch_error(cluster.members[0])
        assert isinstance(error, trionodes.CuratorError)
        assert error.status is StatusCode.UNIMPLEMENTED


async def test_a_stopped_leader_comes_back_serving_watch() -> None:
    async with open_fake_cluster(tls=False) as cluster:
        leader = cluster.leader
        async with (
            trionodes.open_curator(leader.host, leader.port) as curator,
            curator._open_stream(ALL_NODES) as stream,
        ):
            await receive_backlog(stream)
            await cluster.stop_member(0)
            with trio.fail_after(TIMEOUT), pytest.raises(trionodes.ConnectionLost):
                await stream.receive()
        assert cluster.streams_dropped == 1
        await cluster.start_member(0)
        assert len(await backlog_of(leader)) == 3


async def test_nothing_is_left_open_on_any_member_after_exit() -> None:
    async with open_fake_cluster(tls=False) as cluster:
        leader = cluster.leader
        async with (
            trionodes.open_curator(leader.host, leader.port) as curator,
            curator._open_stream(ALL_NODES) as stream,
            leader_call(cluster.members[1]),
        ):
            await receive_backlog(stream)
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(leader_call(cluster.members[2]))
                cluster.members[2].server.freeze()
    for member in cluster.members:
        assert not member.up
        assert member.server.open_connections == 0
        assert member.leader_streams == 0
        await assert_refused(member)
    assert cluster.active_streams == 0


# Keepalive policies and GOAWAY.


async def test_pinging_too_often_gets_goaway_too_many_pings() -> None:
    policy = PingPolicy(min_interval=1.0, max_strikes=2)
    async with (
        open_fake_cluster(members=1, tls=False, keepalive_policy=policy) as cluster,
        leader_call(cluster.leader, keepalive=0.05) as call,
    ):
        await call.wait(answers=99)
        assert call.channel is not None
        trace = call.channel.trace()
        assert trace is not None
        assert trace.goaway == GoAway("ENHANCE_YOUR_CALM", b"too_many_pings")
        assert not trace.ping_unanswered
        await settle()  # the server's side of the close
        server = cluster.leader.server
        # The first ping and two strikes pass; the third strike is one too many.
        assert server.pings_received == 4
        assert server.pings_refused == 1
        assert server.open_connections == 0


async def test_the_grpc_default_policy_cuts_off_frequent_pings() -> None:
    async with (
        open_fake_cluster(
            members=1, tls=False, keepalive_policy=GRPC_DEFAULT_PING_POLICY
        ) as cluster,
        leader_call(cluster.leader, keepalive=0.05) as call,
    ):
        await call.wait(answers=99)
        assert call.channel is not None
        trace = call.channel.trace()
        assert trace is not None
        assert trace.goaway is not None
        assert trace.goaway.too_many_pings


async def test_the_curator_policy_accepts_a_ping_every_1_5_seconds() -> None:
    async with (
        open_fake_cluster(members=1, tls=False) as cluster,
        leader_call(cluster.leader, keepalive=1.5) as call,
    ):
        server = cluster.leader.server
        with trio.fail_after(TIMEOUT):
            # Four pings: more than the policy's strikes, had any been one.
            while server.pings_received < 4:  # noqa: ASYNC110 (counted on the loop thread)
                await trio.sleep(0.1)
        await settle()
        assert not call.ended
        assert server.pings_refused == 0
        assert server.open_connections == 1


async def test_goaway_reaches_the_client_with_its_code_and_data() -> None:
    async with (
        open_fake_cluster(members=1, tls=False) as cluster,
        leader_call(cluster.leader) as call,
    ):
        await call.wait()
        cluster.leader.server.goaway(debug=b"shutting down")
        await call.wait(answers=99)
        assert call.channel is not None
        trace = call.channel.trace()
        assert trace is not None
        assert trace.goaway == GoAway("NO_ERROR", b"shutting down")
        # The server still listens: a new call is served.
        async with leader_call(cluster.leader) as again:
            await again.wait()
            assert len(again.answers) == 1


# TLS.


def client_context(cluster: FakeCluster, directory: Path, *, owner: bool) -> ssl.SSLContext:
    """A plain client context that verifies the cluster's nodes by their IDs.

    With ``owner`` it presents the owner's certificate, and since the CA is in its
    trust store, OpenSSL completes the chain: it sends two certificates.
    """
    assert cluster.pki is not None
    context = ssl.create_default_context(cadata=cluster.pki.ca_pem.decode("ascii"))
    context.set_alpn_protocols(["h2"])
    if owner:
        cert, key = directory / "owner.pem", directory / "owner-key.pem"
        cluster.pki.owner.write(cert, key)
        context.load_cert_chain(cert, key)
    assert context.check_hostname
    return context


async def test_node_certificates_verify_as_the_node_id_and_never_as_the_address() -> None:
    async with open_fake_cluster() as cluster:
        assert cluster.pki is not None
        context = ssl.create_default_context(cadata=cluster.pki.ca_pem.decode("ascii"))
        context.set_alpn_protocols(["h2"])
        for member in cluster.members:
            tcp = await trio.open_tcp_stream(member.host, member.port)
            async with trio.SSLStream(tcp, context, server_hostname=member.node_id) as stream:
                await stream.do_handshake()
                assert stream.selected_alpn_protocol() == "h2"
        # Checked against the address dialled, it fails: no IP address is named.
        tcp = await trio.open_tcp_stream("127.0.0.1", cluster.leader.port)
        async with trio.SSLStream(tcp, context, server_hostname="127.0.0.1") as stream:
            with pytest.raises(trio.BrokenResourceError) as caught:
                await stream.do_handshake()
        assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


async def test_watch_over_tls_needs_the_owner_certificate() -> None:
    async with open_fake_cluster() as cluster:
        assert cluster.credentials is not None
        assert cluster.metroctl_dir is not None
        assert sorted(p.name for p in cluster.metroctl_dir.iterdir()) == [
            "ca.pem",
            "owner-key.pem",
            "owner.pem",
        ]
        leader = cluster.leader
        # metroctl's credentials: the owner's certificate alone.
        assert len(await backlog_of(leader, cluster.credentials._client_context())) == 3
        with tempfile.TemporaryDirectory() as directory:
            anonymous = client_context(cluster, Path(directory), owner=False)
            error = await watch_error(leader, anonymous, leader.node_id)
        assert isinstance(error, trionodes.CuratorError)
        assert error.status is StatusCode.UNAUTHENTICATED
        # GetCurrentLeader needs no client certificate.
        async with leader_call(cluster.members[1], ssl_context=anonymous) as call:
            await call.wait()
            assert call.answers == [about(cluster, leader, cluster.members[1])]
        assert cluster.metroctl_dir.exists()
        directory_used = cluster.metroctl_dir
    assert not directory_used.exists()


@pytest.mark.skipif(
    sys.version_info < (3, 13), reason="counting a client's certificates needs 3.13"
)
async def test_a_client_sending_two_certificates_is_refused() -> None:
    async with open_fake_cluster(members=1) as cluster:
        with tempfile.TemporaryDirectory() as directory:
            context = client_context(cluster, Path(directory), owner=True)
            error = await watch_error(cluster.leader, context, cluster.leader.node_id)
        assert isinstance(error, trionodes.CuratorError)
        assert error.status is StatusCode.UNAUTHENTICATED
        assert error.details == "exactly one client certificate must be sent"


async def test_another_clusters_owner_is_refused_per_call() -> None:
    other = ClusterPKI()
    async with open_fake_cluster(members=1, trust_client_cas=[other.ca_pem]) as cluster:
        assert cluster.pki is not None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        with tempfile.TemporaryDirectory() as directory:
            cert, key = Path(directory, "cert.pem"), Path(directory, "key.pem")
            other.owner.write(cert, key)
            context.load_cert_chain(cert, key)
        error = await watch_error(cluster.leader, context)
        assert isinstance(error, trionodes.CuratorError)
        assert error.status is StatusCode.UNAUTHENTICATED
        assert error.details == "the client certificate is not from the cluster CA"


# asyncio.


def test_the_fake_cluster_runs_under_asyncio() -> None:
    async def main() -> tuple[list[str], grpclib.const.Status | None]:
        async with open_fake_cluster(tls=False) as cluster:
            cluster.put(make_node(1))
            # Member 1 is next in line: it stops being a follower.
            leader, follower = cluster.leader, cluster.members[1]
            async with (
                trionodes.open_curator(leader.host, leader.port) as curator,
                curator._open_stream(ALL_NODES) as stream,
            ):
                ids = await receive_backlog(stream)
            channel = grpclib.client.Channel(follower.host, follower.port, codec=RawCodec())
            try:
                async with channel.request(
                    GET_CURRENT_LEADER_PATH,
                    grpclib.const.Cardinality.UNARY_STREAM,
                    RawMessage,
                    RawMessage,
                ) as call:
                    await call.send_message(cast(RawMessage, b""), end=True)
                    answer = GetCurrentLeaderResponse.parse(cast(bytes, await call.recv_message()))
                    assert answer == about(cluster, leader, follower)
                    await cluster.move_leader()
                    await call.recv_message()
            except grpclib.exceptions.GRPCError as exc:
                status = exc.status
            else:
                status = grpclib.const.Status.OK
            finally:
                channel.close()
            return ids, status

    ids, status = asyncio.run(main())
    assert len(ids) == 4
    assert status is grpclib.const.Status.UNAVAILABLE
