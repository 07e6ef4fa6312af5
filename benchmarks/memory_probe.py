"""One client's resident memory per node after a sync, in a fresh process.

``python -m benchmarks.memory_probe CLIENT PORT NODES`` syncs with the benchmark
Curator on ``127.0.0.1:PORT`` (which serves ``NODES`` nodes) and prints one JSON
line: the growth of the process's resident set (RSS) from just before connecting to
just after the sync, with the cluster held and a full collection done, per node.
``CLIENT`` is ``trionodes`` (``open_node_watch`` then ``wait_synced`` on Trio; the
watch holds the nodes) or ``baseline`` (the grpc.aio + upb + dict client on asyncio).

Every import is done before the first reading, so that only what the sync leaves
behind is counted; a fresh process keeps other runs' heap out of the figure.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys

import trio

import trionodes

from . import grpcio_client

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    """This process's resident set size in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


async def _trionodes(port: int, nodes: int) -> int:
    gc.collect()
    before = rss()
    async with (
        trionodes.open_curator("127.0.0.1", port) as curator,
        trionodes.open_node_watch(curator) as watch,
    ):
        await watch.wait_synced()
        assert len(watch.nodes) == nodes
        gc.collect()
        return rss() - before


async def _baseline(port: int, nodes: int) -> int:
    gc.collect()
    before = rss()
    _, watch = await grpcio_client.timed_sync(port)
    try:
        assert len(watch.nodes) == nodes
        gc.collect()
        return rss() - before
    finally:
        await watch.close()


def main() -> None:
    """Measure the client named on the command line and print the JSON line."""
    client, port, nodes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    grpcio_client.api_pb2()  # imported before the first reading, like the rest
    import grpc.aio  # noqa: F401

    if client == "trionodes":
        grown = trio.run(_trionodes, port, nodes)
    elif client == "baseline":
        grown = asyncio.run(_baseline(port, nodes))
    else:
        raise SystemExit(f"unknown client {client!r}")
    print(json.dumps({"client": client, "nodes": nodes, "rss_bytes_per_node": grown / nodes}))


if __name__ == "__main__":
    main()
