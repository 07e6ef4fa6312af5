"""Watch calls without a watch: requests, and reading what a fake sends on a call."""

from __future__ import annotations

import anyio

import trionodes
from trionodes._core.wire import split_watch_event
from trionodes._curator import RawStream
from trionodes._proto.metropolis.node.core.curator.proto.api import (
    WatchRequestNodeInCluster,
    WatchRequestNodesInCluster,
)
from trionodes.testing import make_node

ALL_NODES = trionodes.WatchRequest(nodes_in_cluster=WatchRequestNodesInCluster())


def one_node(index: int) -> trionodes.WatchRequest:
    """A NodeInCluster request for ``make_node(index)``."""
    return trionodes.WatchRequest(node_in_cluster=WatchRequestNodeInCluster(make_node(index).id))


async def receive_backlog(stream: RawStream) -> list[str]:
    """The node ids of a NodesInCluster backlog, in the order received."""
    ids: list[str] = []
    while True:
        event = split_watch_event(await stream.receive())
        ids += [node_id for node_id, _ in event.nodes]
        if event.last_backlogged:
            return ids


class Receiver:
    """Receives from a stream in the background, to see whether anything arrives."""

    def __init__(self, stream: RawStream) -> None:
        self._stream = stream
        self.received: list[bytes] = []
        self.error: Exception | None = None

    async def run(self) -> None:
        try:
            while True:
                self.received.append(await self._stream.receive())
        except (trionodes.TrionodesError, anyio.EndOfStream) as exc:
            self.error = exc
