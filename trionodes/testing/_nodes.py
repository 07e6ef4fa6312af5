"""Nodes for tests: realistic ones, and a cluster that keeps changing them."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import random
from collections.abc import Mapping

import anyio

from .._proto.metropolis.node.core.curator.proto.api import Node
from .._proto.metropolis.proto import common
from .._proto.version import spec
from ._model import ClusterModel


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


async def run_churn(
    cluster: ClusterModel,
    *,
    changes_per_second: float = 5.0,
    target_nodes: int = 8,
    seed: int | None = None,
) -> None:
    """Keep changing ``cluster`` until cancelled, like a live cluster.

    Nodes join (as ``NEW``), come up, change address and leave, so that the
    cluster wanders around ``target_nodes`` nodes. A changed node keeps its roles
    and labels; nodes running a Curator (a fake cluster's members) are left alone.

    Args:
        cluster: The cluster to change: a fake Curator, or an in-memory one.
        changes_per_second: How often to make a change.
        target_nodes: The cluster size to hover around.
        seed: Seeds the random choices; None for a random seed.
    """
    rng = random.Random(seed)
    next_index = max((_index(node_id) for node_id in _churnable(cluster)), default=0) + 1
    while True:
        await anyio.sleep(1 / changes_per_second)
        churnable = _churnable(cluster)
        size = len(churnable)
        roll = rng.random()
        # One change in five is a join or a leave, more likely towards the target.
        if size == 0 or (roll < 0.2 and rng.random() < target_nodes / (size + target_nodes)):
            cluster.put(make_node(next_index, state=common.NodeState.NEW))
            next_index += 1
        elif roll < 0.2:
            cluster.delete(rng.choice(churnable))
        else:
            node = cluster.nodes[rng.choice(churnable)]
            if node.state is not common.NodeState.UP:
                cluster.put(dataclasses.replace(node, state=common.NodeState.UP))
            elif node.status is not None:
                address = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                status = dataclasses.replace(node.status, external_address=address)
                cluster.put(dataclasses.replace(node, status=status))


def _churnable(cluster: ClusterModel) -> list[str]:
    """The ids of the nodes churn may change, sorted: not those running a Curator.

    Control-plane nodes stay as they are: clients find Curators through them.
    """
    return sorted(
        node_id
        for node_id, node in cluster.nodes.items()
        if node.status is None or node.status.running_curator is None
    )


def _index(node_id: str) -> int:
    """The index :func:`make_node` made ``node_id`` from (0 for another id)."""
    try:
        return int(node_id.rsplit("-", 1)[-1], 16)
    except ValueError:
        return 0
