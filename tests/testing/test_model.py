"""The cluster model both fakes serve, driven directly: no event loop, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from trionodes import CuratorError, StatusCode, WatchRequest
from trionodes._core.wire import RawEvent, split_watch_event
from trionodes._proto.metropolis.node.core.curator.proto.api import WatchRequestNodeInCluster
from trionodes.testing import make_node
from trionodes.testing._model import ClusterModel, ModelSession

from ..core.test_purity import FORBIDDEN, PACKAGE_DIR, imported_modules
from .calls import ALL_NODES, one_node


def node_id(index: int) -> str:
    return make_node(index).id


def events(session: ModelSession) -> list[RawEvent]:
    """What the session may send now, split; it must hold no status."""
    items = session.take()
    assert not [item for item in items if isinstance(item, CuratorError)]
    return [split_watch_event(item) for item in items if isinstance(item, bytes)]


def ids(event: RawEvent) -> list[str]:
    return [node for node, _ in event.nodes]


def test_imports_no_async_library() -> None:
    path = PACKAGE_DIR / "testing" / "_model.py"
    imported = imported_modules(path, "trionodes.testing")
    assert not {name.split(".")[0] for name in imported} & FORBIDDEN
    # What it takes from trionodes is pure too.
    assert {name for name in imported if name.startswith("trionodes.")} <= {
        "trionodes._core.wire",
        "trionodes._core.wire.encode_watch_event",
        "trionodes._errors",
        "trionodes._errors.CuratorError",
        "trionodes._errors.StatusCode",
        "trionodes._proto.metropolis.node.core.curator.proto.api",
        "trionodes._proto.metropolis.node.core.curator.proto.api.Node",
        "trionodes._proto.metropolis.node.core.curator.proto.api.WatchRequest",
    }


@pytest.mark.parametrize(("per_event", "sizes"), [(3, [3, 3, 3, 1]), (None, [10]), (20, [10])])
def test_backlog_is_split_by_count(per_event: int | None, sizes: list[int]) -> None:
    model = ClusterModel(backlog_nodes_per_event=per_event)
    model.put(*(make_node(i) for i in range(10)))
    backlog = events(model.open_session(ALL_NODES))
    assert [len(event.nodes) for event in backlog] == sizes
    assert [event.last_backlogged for event in backlog] == [False] * (len(sizes) - 1) + [True]
    assert sorted(i for event in backlog for i in ids(event)) == sorted(model.nodes)


def test_backlog_is_split_by_size() -> None:
    limit = 3 * len(bytes(make_node(1))) + 30  # room for three nodes and their tags
    model = ClusterModel(max_message_bytes=limit)
    model.put(*(make_node(i) for i in range(1, 8)))
    backlog = [item for item in model.open_session(ALL_NODES).take() if isinstance(item, bytes)]
    assert [len(split_watch_event(message).nodes) for message in backlog] == [3, 3, 1]
    assert max(len(message) for message in backlog) <= limit


def test_backlog_of_an_empty_cluster_is_one_empty_last_event() -> None:
    [event] = events(ClusterModel().open_session(ALL_NODES))
    assert (event.nodes, event.last_backlogged) == ((), True)


def test_backlog_order_follows_the_seed() -> None:
    def order(seed: int) -> list[str]:
        model = ClusterModel(shuffle_seed=seed)
        model.put(*(make_node(i) for i in range(20)))
        return [i for event in events(model.open_session(ALL_NODES)) for i in ids(event)]

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert order(1) != [node_id(i) for i in range(20)]


def test_a_change_is_one_event_for_the_cluster_and_only_its_node_for_a_node() -> None:
    model = ClusterModel()
    model.put(make_node(1), make_node(2))
    cluster, node_1, node_3 = (
        model.open_session(request) for request in (ALL_NODES, one_node(1), one_node(3))
    )
    for session in (cluster, node_1, node_3):
        session.take()

    model.change(put=[make_node(1, address="10.9.9.9"), make_node(3)], delete=[node_id(2)])
    [everything] = events(cluster)
    assert (ids(everything), everything.tombstones) == ([node_id(1), node_id(3)], (node_id(2),))
    assert [ids(event) for event in events(node_1)] == [[node_id(1)]]
    assert [ids(event) for event in events(node_3)] == [[node_id(3)]]

    model.delete(node_id(1), node_id(9))  # 9 is unknown: ignored
    [tombstone] = events(node_1)
    assert (tombstone.nodes, tombstone.tombstones) == ((), (node_id(1),))
    assert events(node_3) == []  # not its node
    model.delete(node_id(9))  # nothing changed: no event
    assert events(cluster) == [RawEvent((), (node_id(1),), False)]


def test_a_node_call_waits_for_its_node() -> None:
    model = ClusterModel()
    session = model.open_session(one_node(1))
    assert session.take() == []
    model.put(make_node(2))
    assert session.take() == []
    model.put(make_node(1))
    assert [ids(event) for event in events(session)] == [[node_id(1)]]


def test_spurious_nodes_reach_node_calls() -> None:
    model = ClusterModel(spurious_nodes=True)
    model.put(make_node(1), make_node(2))
    session = model.open_session(one_node(1))
    [first] = events(session)
    assert ids(first)[0] == node_id(1)  # its own node first, then the others
    assert sorted(ids(first)) == [node_id(1), node_id(2)]
    model.put(make_node(3))
    assert [ids(event) for event in events(session)] == [[node_id(3)]]


def test_a_stall_lets_each_call_send_its_allowance() -> None:
    model = ClusterModel(backlog_nodes_per_event=1)
    model.put(make_node(1), make_node(2), make_node(3))
    model.stall(after_messages=1)
    session = model.open_session(ALL_NODES)
    assert len(session.take()) == 1  # one of three backlog events
    assert session.take() == []
    model.fail_streams(StatusCode.UNAVAILABLE, "leader lost")
    model.stall(after_messages=2)  # the status waits its turn, like a message
    assert [event.last_backlogged for event in events(session)] == [False, True]
    model.resume()
    assert not model.stalled
    [status] = session.take()
    assert isinstance(status, CuratorError)
    assert (status.status, status.details) == (StatusCode.UNAVAILABLE, "leader lost")


def test_the_waker_hears_of_every_message() -> None:
    model = ClusterModel()
    session = model.open_session(ALL_NODES)
    wakes: list[int] = []
    session.set_waker(lambda: wakes.append(len(wakes)))
    assert wakes == [0]  # the backlog was waiting already
    session.take()
    model.put(make_node(1))
    model.send_raw(b"raw")
    model.stall()
    model.resume()
    assert len(wakes) == 5


def test_send_raw_picks_calls_by_node() -> None:
    model = ClusterModel()
    cluster, node_1 = model.open_session(ALL_NODES), model.open_session(one_node(1))
    cluster.take()
    assert model.send_raw(b"one", node_id=node_id(1)) == 1
    assert model.send_raw(b"all") == 1
    assert (cluster.take(), node_1.take()) == ([b"all"], [b"one"])
    assert model.nodes == {}


def test_authorize_sees_the_certificate_and_refuses() -> None:
    model = ClusterModel()
    seen: list[Mapping[str, Any] | None] = []

    def owners_only(cert: Mapping[str, Any] | None) -> CuratorError | None:
        seen.append(cert)
        if cert and cert.get("subject") == "owner":
            return None
        return CuratorError(StatusCode.PERMISSION_DENIED, "not an owner")

    model.authorize = owners_only
    model.open_session(ALL_NODES, peer_cert={"subject": "owner"})
    with pytest.raises(CuratorError) as caught:
        model.open_session(ALL_NODES)
    assert caught.value.status is StatusCode.PERMISSION_DENIED
    assert seen == [{"subject": "owner"}, None]
    assert (model.streams_opened, model.streams_refused, model.active_streams) == (1, 1, 1)


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (WatchRequest(), StatusCode.UNIMPLEMENTED),
        (
            WatchRequest(node_in_cluster=WatchRequestNodeInCluster(node_id="")),
            StatusCode.INVALID_ARGUMENT,
        ),
    ],
)
def test_invalid_requests_are_refused(request_: WatchRequest, status: StatusCode) -> None:
    model = ClusterModel()
    with pytest.raises(CuratorError) as caught:
        model.open_session(request_)
    assert caught.value.status is status
    assert model.streams_opened == 0


class IdleNoting(ClusterModel):
    """Notes each time the last open call ends."""

    idle_times = 0

    def _became_idle(self) -> None:
        self.idle_times += 1


def test_counters_tell_how_calls_ended() -> None:
    model = IdleNoting()
    ended, cancelled, dropped = (model.open_session(ALL_NODES) for _ in range(3))
    ended.close(cancelled=False)
    cancelled.close(cancelled=True)
    model._mark_open_streams_dropped()
    assert (model.active_streams, model.idle_times) == (1, 0)
    dropped.close(cancelled=True)  # its transport cancelled it, dropping it
    assert (model.streams_opened, model.streams_cancelled, model.streams_dropped) == (3, 1, 1)
    assert (model.active_streams, model.idle_times) == (0, 1)
    later = model.open_session(ALL_NODES)
    later.close(cancelled=True)  # opened after the drop: not dropped
    assert (model.streams_cancelled, model.streams_dropped, model.idle_times) == (2, 1, 2)
