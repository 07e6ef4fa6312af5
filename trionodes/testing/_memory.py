"""The in-memory fake: the cluster model behind a :class:`trionodes.Curator`, no network.

Each call is served straight from the model, in the task that receives from it: no
sockets, no threads, no asyncio loop. So it runs on any anyio backend and under
Trio's ``MockClock``, where a watch's timers (backoff, backlog timeout) take no
wall time.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel

from .._curator import Curator
from .._errors import ConnectionLost, CuratorError, StatusCode, TrionodesError
from .._proto.metropolis.node.core.curator.proto.api import WatchRequest
from ._model import DEFAULT_MESSAGE_BYTES, ModelSession
from ._served import ServedCluster


class _MemoryStream:
    """The messages of one Watch call, taken from its session as they are received."""

    def __init__(self, session: ModelSession | None, error: TrionodesError | None) -> None:
        # None once the call has ended; what is in _ready is still received first.
        self._session = session
        self._ready: collections.deque[bytes] = collections.deque()
        # How the call ended: None is a clean end (status OK).
        self._error = error
        self._arrived: anyio.Event | None = None
        if session is not None:
            session.set_waker(self._wake)

    async def receive(self) -> bytes:
        """The next serialized ``WatchEvent``.

        Raises:
            anyio.EndOfStream: The call ended with status OK.
            TrionodesError: The call failed.
        """
        # A checkpoint even with a message ready, as Trio's rule has it: a watch
        # that keeps receiving stays cancellable, and lets other tasks run.
        await anyio.lowlevel.checkpoint()
        while not self._ready and self._session is not None:
            self._take(self._session)
            if not self._ready and self._session is not None:
                self._arrived = anyio.Event()
                await self._arrived.wait()
        if self._ready:
            return self._ready.popleft()
        if self._error is None:
            raise anyio.EndOfStream
        raise self._error

    def end(self, error: TrionodesError | None, *, cancelled: bool) -> None:
        """End the call, unless it has ended already."""
        if self._session is None:
            return
        session, self._session = self._session, None
        self._error = error
        session.close(cancelled)
        self._wake()

    def _take(self, session: ModelSession) -> None:
        for item in session.take():
            if not isinstance(item, CuratorError):
                self._ready.append(item)
            elif item.status is StatusCode.OK:
                self.end(None, cancelled=False)
                return
            else:
                # A copy per call: fail_streams pushes one error to every call.
                self.end(CuratorError(item.status, item.details), cancelled=False)
                return

    def _wake(self) -> None:
        if self._arrived is not None:
            self._arrived.set()


class _MemorySource:
    """Opens Watch calls on a :class:`MemoryCurator`'s model; what its curator is over."""

    # What log lines and reprs name it by.
    host = "memory"
    port = 0
    leader_id = None

    def __init__(self, cluster: MemoryCurator) -> None:
        self._cluster = cluster
        self.streams: set[_MemoryStream] = set()
        # Shut down: new calls fail as calls to a Curator that is down do.
        self.closed = False

    @contextlib.asynccontextmanager
    async def open_stream(self, request: WatchRequest) -> AsyncIterator[_MemoryStream]:
        """Start a Watch call; leaving the block cancels it."""
        stream = self._start(request)
        self.streams.add(stream)
        try:
            yield stream
        finally:
            self.streams.discard(stream)
            stream.end(None, cancelled=True)

    def _start(self, request: WatchRequest) -> _MemoryStream:
        if self.closed:
            return _MemoryStream(None, ConnectionLost("the in-memory Curator has shut down"))
        try:
            return _MemoryStream(self._cluster.open_session(request), None)
        except CuratorError as refusal:
            # A copy per call, as a status received over the network would be.
            return _MemoryStream(None, CuratorError(refusal.status, refusal.details))


class MemoryCurator(ServedCluster):
    """A cluster held in memory and served with no network; see :func:`open_memory_curator`.

    Change the cluster with :meth:`put`, :meth:`delete` and :meth:`change`, fail
    or stall its Watch calls with :meth:`fail_streams`, :meth:`send_raw`,
    :meth:`stall`, :meth:`resume` and :meth:`drop_streams`, exactly as with a
    :class:`FakeCurator`.
    """

    curator: Curator
    """The connection to this cluster: pass it to :func:`trionodes.watch_nodes`,
    :func:`trionodes.watch_node` and the other watches."""
    _source: _MemorySource

    def drop_streams(self) -> None:
        """End every open Watch call with :class:`ConnectionLost`, as a lost connection does.

        Messages the client has already taken are still received first; those
        still queued are lost. Counted in ``streams_dropped``.
        """
        self._mark_open_streams_dropped()
        for stream in list(self._source.streams):
            stream.end(ConnectionLost("the in-memory Curator dropped the stream"), cancelled=True)


@contextlib.asynccontextmanager
async def open_memory_curator(
    *,
    backlog_nodes_per_event: int | None = None,
    max_message_bytes: int = DEFAULT_MESSAGE_BYTES,
    shuffle_seed: int | None = 0,
    spurious_nodes: bool = False,
) -> AsyncIterator[MemoryCurator]:
    """Hold a cluster in memory and serve it to watches in this process until the block ends.

    The same cluster and calls as :func:`open_fake_curator` serves, with no
    network: no sockets, threads or asyncio loop, so it works on any anyio
    backend and under Trio's ``MockClock``. Pass its ``curator`` to a watch::

        async with open_memory_curator() as memory:
            memory.put(make_node(1), make_node(2))
            await nursery.start(trionodes.watch_nodes, memory.curator, follower)

    The options (``backlog_nodes_per_event``, ``max_message_bytes``,
    ``shuffle_seed``, ``spurious_nodes``) are those of :func:`open_fake_curator`,
    and shape the backlogs and node events the same way.

    Yields:
        The in-memory Curator. On exit, open calls end with ``UNAVAILABLE`` (a
        stall ends first), and later calls fail with :class:`ConnectionLost`.
    """
    memory = MemoryCurator(
        backlog_nodes_per_event=backlog_nodes_per_event,
        max_message_bytes=max_message_bytes,
        shuffle_seed=shuffle_seed,
        spurious_nodes=spurious_nodes,
    )
    memory._source = _MemorySource(memory)
    memory.curator = Curator._over(memory._source)
    try:
        yield memory
    finally:
        memory._source.closed = True
        await memory._shut_down()
