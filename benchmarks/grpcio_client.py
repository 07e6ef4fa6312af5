"""The baseline a Python user writes without trionodes: grpc.aio, protobuf and a dict.

The client is ``grpcio``'s asyncio API (``grpc.aio``) with the messages of the
``protobuf`` package (its upb C decoder), holding the cluster in a dict of node id
to message. Per event it does what such a user's loop does: parse the
``WatchEvent``, set ``nodes[node.id] = node`` for each node, pop each tombstone, and
note ``PROGRESS_LAST_BACKLOGGED``.

The protobuf classes are generated when first asked for, from ``proto/`` with
``grpcio-tools`` (``python -m grpc_tools.protoc --python_out=DIR``), into a
temporary directory put on ``sys.path``; nothing generated is committed. A child
process reuses its parent's directory (see :data:`PB2_DIR_VARIABLE`).

grpcio, protobuf and grpcio-tools are in the ``bench`` dependency group only, never
the library's dependencies.
"""

from __future__ import annotations

import atexit
import functools
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
# Set by :func:`pb2_dir` for child processes, so they import the same classes.
PB2_DIR_VARIABLE = "TRIONODES_BENCH_PB2_DIR"
WATCH = "/metropolis.node.core.curator.proto.api.Curator/Watch"


@functools.cache
def pb2_dir() -> pathlib.Path:
    """The directory of the generated ``_pb2`` modules, generating them the first time.

    Removed when this process exits, unless it was inherited from the parent.
    """
    inherited = os.environ.get(PB2_DIR_VARIABLE)
    if inherited:
        return pathlib.Path(inherited)
    out = pathlib.Path(tempfile.mkdtemp(prefix="trionodes-bench-pb2-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    protos = sorted(p.relative_to(PROTO_DIR).as_posix() for p in PROTO_DIR.rglob("*.proto"))
    # `python -m grpc_tools.protoc` adds the bundled well-known types
    # (google/protobuf/timestamp.proto) to the include path.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"--proto_path={PROTO_DIR}",
            f"--python_out={out}",
            *protos,
        ],
        check=True,
    )
    os.environ[PB2_DIR_VARIABLE] = str(out)
    return out


@functools.cache
def api_pb2() -> ModuleType:
    """The generated module of the Curator API (``WatchRequest``, ``WatchEvent``...)."""
    directory = str(pb2_dir())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    from google.protobuf.internal import api_implementation

    if api_implementation.Type() != "upb":
        raise RuntimeError(f"protobuf runs on {api_implementation.Type()!r}, not upb")
    from metropolis.node.core.curator.proto.api import api_pb2 as module  # type: ignore

    return module  # type: ignore[no-any-return]


def apply(nodes: dict[str, Any], event: Any) -> bool:
    """The hand-written client's work for one event; true once the backlog is in."""
    for node in event.nodes:
        nodes[node.id] = node
    for tombstone in event.node_tombstones:
        nodes.pop(tombstone.node_id, None)
    return bool(event.progress == _last_backlogged())


@functools.cache
def _last_backlogged() -> int:
    return int(api_pb2().WatchEvent.PROGRESS_LAST_BACKLOGGED)


@dataclass
class Watch:
    """One open NodesInCluster call of the hand-written client.

    Attributes:
        channel: Its ``grpc.aio`` channel.
        call: The server-streaming call; iterate it for ``WatchEvent`` messages.
        nodes: Node id to protobuf ``Node``, as the events so far left it.
    """

    channel: Any
    call: Any
    nodes: dict[str, Any]

    async def sync(self) -> None:
        """Read events until the backlog is in."""
        async for event in self.call:
            if apply(self.nodes, event):
                return
        raise RuntimeError("the stream ended before its backlog was in")

    async def close(self) -> None:
        """Cancel the call and close the channel."""
        self.call.cancel()
        await self.channel.close()


def open_watch(port: int, channel: Any = None) -> Watch:
    """Open a NodesInCluster call to ``127.0.0.1:port``, on a new channel if none is
    given; the dict starts empty. Call it with an asyncio loop running."""
    import grpc.aio

    pb2 = api_pb2()
    if channel is None:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    method = channel.unary_stream(
        WATCH,
        request_serializer=pb2.WatchRequest.SerializeToString,
        response_deserializer=pb2.WatchEvent.FromString,
    )
    request = pb2.WatchRequest(nodes_in_cluster=pb2.WatchRequest.NodesInCluster())
    return Watch(channel, method(request), {})


async def timed_sync(port: int) -> tuple[float, Watch]:
    """Seconds from opening the channel to the backlog being in; the open watch."""
    started = time.perf_counter()
    watch = open_watch(port)
    await watch.sync()
    return time.perf_counter() - started, watch


def diff(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """What a resync changed, as such a client finds it: the ids new or changed
    (messages compared with ``!=``), and the ids gone."""
    changed = [key for key, node in new.items() if old.get(key) != node]
    gone = [key for key in old if key not in new]
    return changed, gone


async def resync(watch: Watch) -> tuple[Watch, list[str], list[str]]:
    """After the server failed the call: what such a client does to catch up.

    Reads ``watch``'s call to its ``UNAVAILABLE`` end, opens a new call on the same
    channel, reads its backlog into a fresh dict and diffs it against the old one.

    Returns:
        The new watch, the ids new or changed, and the ids gone.
    """
    import grpc

    try:
        async for event in watch.call:
            apply(watch.nodes, event)
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.UNAVAILABLE:
            raise
    fresh = open_watch(0, watch.channel)
    await fresh.sync()
    changed, gone = diff(watch.nodes, fresh.nodes)
    return fresh, changed, gone
