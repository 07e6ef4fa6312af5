"""The gRPC transport: every touch of asyncio and grpclib lives in this package.

* :mod:`.bridge`: running asyncio code from the host library (natively under
  asyncio, on a worker-thread loop under Trio).
* :mod:`.client`: :func:`open_curator` and its Watch calls.
* :mod:`.server`: a Watch server with network fault controls (the fakes' transport).
* :mod:`.errors`: what a failed call means, as our exceptions.
* :mod:`.codec`: Watch events cross as undecoded bytes.
* :mod:`.grpclib_private`: every use of grpclib's private parts.
"""

from .client import DEFAULT_MAX_MESSAGE_BYTES, MessageStream, open_curator
from .codec import WATCH_PATH
from .server import WatchHandler, WatchServer, WatchSession, serve_watch

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "WATCH_PATH",
    "MessageStream",
    "WatchHandler",
    "WatchServer",
    "WatchSession",
    "open_curator",
    "serve_watch",
]
