"""The gRPC transport: every touch of asyncio and grpclib lives in this package.

* :mod:`.bridge`: running asyncio code from the host library (natively under
  asyncio, on a worker-thread loop under Trio).
* :mod:`.client`: :func:`open_curator` and its calls.
* :mod:`.cluster`: :func:`open_cluster`, following whichever node leads a cluster.
* :mod:`.server`: a gRPC server with network fault controls (the fakes' transport).
* :mod:`.errors`: what a failed call means, as our exceptions.
* :mod:`.codec`: Watch events cross as undecoded bytes.
* :mod:`.grpclib_private`: every use of grpclib's private parts.
"""

from .client import DEFAULT_MAX_MESSAGE_BYTES, MessageStream, open_curator
from .codec import GET_CURRENT_LEADER_PATH, WATCH_PATH
from .server import (
    Peer,
    PingPolicy,
    StreamHandler,
    StreamingMethod,
    WatchHandler,
    WatchServer,
    WatchSession,
    serve_grpc,
    serve_watch,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "GET_CURRENT_LEADER_PATH",
    "WATCH_PATH",
    "MessageStream",
    "Peer",
    "PingPolicy",
    "StreamHandler",
    "StreamingMethod",
    "WatchHandler",
    "WatchServer",
    "WatchSession",
    "open_curator",
    "serve_grpc",
    "serve_watch",
]
