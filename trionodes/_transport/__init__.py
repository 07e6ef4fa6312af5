"""The gRPC transport: every touch of asyncio and grpclib lives in this package."""

from ._legacy import *  # noqa: F403  (temporary while the package is split)
from ._legacy import MessageStream, WatchServer, serve_watch, WATCH_PATH  # noqa: F401
