"""Formatting nodes and changes as text and JSON (pure functions)."""

from __future__ import annotations

import datetime

from trionodes import Node, NodeState
from trionodes._proto.metropolis.proto.common import NodeStatus
from trionodes.cli._format import (
    age_text,
    diff_nodes,
    format_deleted,
    format_header,
    format_new,
    format_updated,
    full_id,
    node_record,
    short_id,
)
from trionodes.testing import make_node


def test_short_id() -> None:
    assert short_id(make_node(1).id) == "metropolis-…0001"
    assert short_id(make_node(0xABCDEF).id) == "metropolis-…cdef"
    assert short_id("metropolis-12345") == "metropolis-12345"
    assert short_id("0123456789abcdef") == "…cdef"
    assert short_id("node-1") == "node-1"


def test_format_new() -> None:
    node = make_node(1, worker=False, controller=True, consensus=True)
    assert format_new(node) == "+ metropolis-…0001  UP       10.0.0.1        controller,consensus"
    assert format_new(make_node(2, state=NodeState.NEW)) == (
        "+ metropolis-…0002  NEW      10.0.0.2        worker"
    )
    assert format_new(node, full_id) == (
        "+ metropolis-00000000000000000000000000000001  UP       10.0.0.1        "
        "controller,consensus"
    )


def test_format_new_of_a_bare_node() -> None:
    assert format_new(Node(id="metropolis-abc")) == "+ metropolis-abc  INVALID  -               -"
    assert format_new(Node(id="n", state=NodeState(7))) == "+ n  UNKNOWN(7) -               -"


def test_format_deleted() -> None:
    assert format_deleted(make_node(5)) == "- metropolis-…0005  (was UP 10.0.0.5)"
    assert format_deleted(make_node(5), full_id) == (
        "- metropolis-00000000000000000000000000000005  (was UP 10.0.0.5)"
    )


def test_format_updated_address() -> None:
    assert format_updated(make_node(3), make_node(3, address="10.4.7.9")) == (
        "~ metropolis-…0003  address 10.0.0.3 -> 10.4.7.9"
    )


def test_diff_nodes_each_field() -> None:
    base = make_node(3, state=NodeState.NEW)
    assert diff_nodes(base, base) == []
    assert diff_nodes(base, make_node(3)) == ["state NEW -> UP"]
    assert diff_nodes(base, make_node(3, state=NodeState.NEW, controller=True)) == [
        "roles worker -> worker,controller"
    ]
    assert diff_nodes(base, make_node(3, state=NodeState.NEW, worker=False)) == [
        "roles worker -> -"
    ]
    relabelled = make_node(3, state=NodeState.NEW, labels={"rack": "r9", "team": "db"})
    assert diff_nodes(base, relabelled) == ["labels -rack=r3 -zone=z0 +rack=r9 +team=db"]
    moved = make_node(3, state=NodeState.NEW)
    assert moved.clusternet is not None
    moved.clusternet.prefixes[0].cidr = "10.192.77.0/24"
    assert diff_nodes(base, moved) == ["prefixes -10.192.3.0/24 +10.192.77.0/24"]


def test_diff_nodes_several_fields_in_order() -> None:
    before = make_node(4, state=NodeState.STANDBY, controller=True)
    after = make_node(4, address="10.9.9.9", labels={})
    assert diff_nodes(before, after) == [
        "state STANDBY -> UP",
        "address 10.0.0.4 -> 10.9.9.9",
        "roles worker,controller -> worker",
        "labels -rack=r4 -zone=z1",
    ]
    assert format_updated(before, after) == (
        "~ metropolis-…0004  state STANDBY -> UP, address 10.0.0.4 -> 10.9.9.9, "
        "roles worker,controller -> worker, labels -rack=r4 -zone=z1"
    )


def test_diff_nodes_of_fields_not_shown() -> None:
    # Another node's status: only its timestamp and boot id differ from node 1's.
    other = make_node(2, address="10.0.0.1")
    assert other.status is not None
    node = make_node(1)
    node.status = other.status
    assert diff_nodes(make_node(1), node) == ["other fields"]
    bare = Node(id="n")
    assert diff_nodes(bare, Node(id="n", status=NodeStatus(external_address="10.1.1.1"))) == [
        "address - -> 10.1.1.1"
    ]


def test_format_header() -> None:
    assert format_header(1, 6) == "initial cluster: 6 nodes"
    assert format_header(1, 1) == "initial cluster: 1 node"
    assert format_header(7, 3) == "batch 7"


# `trionodes watch`: its output.

NOW = datetime.datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=datetime.UTC)
CLOCK = f"{NOW.astimezone():%H:%M:%S}"


def test_node_record() -> None:
    node = make_node(1, controller=True, consensus=True, curator_port=7835)
    assert node_record(node) == {
        "id": "metropolis-00000000000000000000000000000001",
        "state": "UP",
        "address": "10.0.0.1",
        "roles": ["worker", "controller", "consensus"],
        "labels": {"rack": "r1", "zone": "z1"},
        "wireguard_pubkey": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=",
        "prefixes": ["10.192.1.0/24"],
        "curator_port": 7835,
        "version": "0.3.1",
    }
    assert node_record(Node(id="n")) == {
        "id": "n",
        "state": "INVALID",
        "address": None,
        "roles": [],
        "labels": {},
        "wireguard_pubkey": None,
        "prefixes": [],
        "curator_port": None,
        "version": None,
    }


def test_age_text() -> None:
    assert [age_text(s) for s in (0, 59.9, 60, 3599, 3600, 86399, 86400 * 3)] == [
        "0s",
        "59s",
        "1m",
        "59m",
        "1h",
        "23h",
        "3d",
    ]
