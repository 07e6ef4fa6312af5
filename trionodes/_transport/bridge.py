"""Running asyncio code (grpclib) from the host async library.

grpclib is asyncio-only. Under asyncio it runs on the caller's own loop
(:class:`NativeBridge`). Under Trio it runs on a private asyncio loop in a worker
thread that the connection owns (:class:`ThreadBridge`), started when the connection
is opened and stopped and joined when it closes.

A bridge offers four crossings:

* :meth:`Bridge.run` (host side): run a coroutine on the loop until it ends. A
  cancel on the host side cancels the asyncio task and then waits until it has
  finished, so a call is always torn down (RST_STREAM sent) before the host side
  returns, and no cancel is ever lost.
* :meth:`Bridge.to_loop` (host side) and :meth:`Bridge.to_host` (loop side): call a
  plain function soon on the other side; neither waits.
* :meth:`Bridge.call_host` (loop side): run a plain function on the host side and
  await its result. The fake Curator's server uses it to keep its cluster model on
  the host thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Protocol, TypeVar

import sniffio
import trio

_T = TypeVar("_T")

# How long a closing loop thread may take before the host stops waiting for it
# (seconds): its calls have all ended by then, so only stray callbacks remain.
_STOP_TIMEOUT = 10.0


class Bridge(Protocol):
    """Crossings between the host async library and the asyncio loop grpclib runs on."""

    loop: asyncio.AbstractEventLoop
    # Whether nothing but what this bridge runs is on the loop.
    owns_loop: bool

    async def run(self, fn: Callable[..., Coroutine[Any, Any, _T]], *args: Any) -> _T:
        """Run ``fn(*args)`` on the loop until it returns (host side; cancellable)."""
        ...

    def to_loop(self, fn: Callable[..., object], *args: Any) -> None:
        """Call ``fn(*args)`` soon on the loop (host side; does not wait)."""
        ...

    def to_host(self, fn: Callable[..., object], *args: Any) -> None:
        """Call ``fn(*args)`` soon on the host side (loop side; does not wait)."""
        ...

    async def call_host(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)`` on the host side and return its result (loop side)."""
        ...


class NativeBridge:
    """The host library is asyncio itself: every crossing is a plain call."""

    # The loop is the program's: other things run on it.
    owns_loop = False

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    async def run(self, fn: Callable[..., Coroutine[Any, Any, _T]], *args: Any) -> _T:
        return await fn(*args)

    def to_loop(self, fn: Callable[..., object], *args: Any) -> None:
        fn(*args)

    def to_host(self, fn: Callable[..., object], *args: Any) -> None:
        fn(*args)

    async def call_host(self, fn: Callable[..., _T], *args: Any) -> _T:
        return fn(*args)


# The thread bridges alive now, for :func:`wait_loops_idle`.
_live: weakref.WeakSet[ThreadBridge] = weakref.WeakSet()


class ThreadBridge:
    """The host library is Trio; asyncio runs on a worker thread of this bridge.

    Belongs to the ``trio.run`` that opened it: using it from another raises
    ``RuntimeError``.

    Attributes:
        crossings: How many calls have crossed to either side so far (to tell, in
            tests, whether anything is still moving).
    """

    owns_loop = True

    def __init__(self) -> None:
        self.crossings = 0
        self._token = trio.lowlevel.current_trio_token()
        # A private loop of the standard kind, whatever loop policy the program set.
        self.loop: asyncio.AbstractEventLoop = asyncio.SelectorEventLoop()
        self._stopped = trio.Event()
        self._thread = threading.Thread(
            target=self._serve_loop, name="trionodes-asyncio", daemon=True
        )

    def _serve_loop(self) -> None:
        loop = self.loop
        try:
            loop.run_forever()
            # Every call has ended; let what is still pending (transports closing)
            # finish, then release the resolver threads grpclib may have used.
            pending = asyncio.all_tasks(loop)
            if pending:
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            abort_transports(loop)
            # One more turn so that the aborts' connection_lost callbacks run.
            loop.run_until_complete(asyncio.sleep(0))
        finally:
            loop.close()
            self.to_host(self._stopped.set)

    def start(self) -> None:
        """Start the loop thread."""
        self._thread.start()
        _live.add(self)

    @trio.lowlevel.enable_ki_protection
    async def stop(self) -> None:
        """Stop the loop, wait until its thread has released everything, and join it."""
        _live.discard(self)
        self.loop.call_soon_threadsafe(self.loop.stop)
        with trio.move_on_after(_STOP_TIMEOUT) as waiting:
            await self._stopped.wait()
        if not waiting.cancelled_caught:
            self._thread.join()

    def check_host(self) -> None:
        """Raise ``RuntimeError`` unless called from the ``trio.run`` that opened this."""
        try:
            token = trio.lowlevel.current_trio_token()
        except RuntimeError:
            token = None
        if token is not self._token:
            raise RuntimeError(
                "this trionodes connection was opened in another trio.run (or another "
                "async library); open it in the run that uses it"
            )

    # Ctrl-C arrives at a checkpoint here, never between starting the task and
    # guarding it.
    @trio.lowlevel.enable_ki_protection
    async def run(self, fn: Callable[..., Coroutine[Any, Any, _T]], *args: Any) -> _T:
        self.check_host()
        call = _ThreadCall(self, fn(*args))
        self.loop.call_soon_threadsafe(call.start)
        try:
            await call.finished.wait()
        except BaseException:
            # Cancelled (or interrupted): cancel the asyncio task, then wait until it
            # has ended, so that the call is torn down before the host goes on.
            self.loop.call_soon_threadsafe(call.cancel)
            with trio.CancelScope(shield=True):
                await call.finished.wait()
            raise
        result: _T = call.result()
        return result

    def to_loop(self, fn: Callable[..., object], *args: Any) -> None:
        self.crossings += 1
        self.loop.call_soon_threadsafe(fn, *args)

    def to_host(self, fn: Callable[..., object], *args: Any) -> None:
        self.crossings += 1
        # After the trio.run has ended there is nobody left to tell.
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(fn, *args)

    async def call_host(self, fn: Callable[..., _T], *args: Any) -> _T:
        future: asyncio.Future[_T] = self.loop.create_future()

        def on_host() -> None:
            try:
                result = fn(*args)
            except BaseException as exc:
                self.to_loop(_settle, future, None, exc)
            else:
                self.to_loop(_settle, future, result, None)

        self.to_host(on_host)
        return await future


# Rounds of probes in a row that must see nothing move before the loops are idle.
_QUIET_ROUNDS = 5

# Loop iterations a probe waits through: enough for data that arrived on a socket
# to reach the code that hands it across.
_PROBE_ITERATIONS = 3


async def _probe(bridge: ThreadBridge) -> None:
    """Return once ``bridge``'s loop has run a few iterations from now."""
    done = trio.Event()
    token = bridge._token

    def step(left: int) -> None:
        if left:
            bridge.loop.call_soon(step, left - 1)
        else:
            token.run_sync_soon(done.set)

    bridge.loop.call_soon_threadsafe(step, _PROBE_ITERATIONS)
    await done.wait()


async def wait_loops_idle() -> None:
    """Wait until every task of this ``trio.run`` and every loop thread is idle.

    Idle means: all tasks are blocked, and rounds of probes through every loop
    thread in a row saw no call cross either way. Several rounds, because data a
    server's loop has written reaches the client's loop through a socket, which
    no crossing counts: a round that probed the client's loop before the write
    lands would see nothing. What a test needs before asserting that something
    did, or did not, happen.
    """
    import trio.testing  # only tests get here

    quiet = 0
    while quiet < _QUIET_ROUNDS:
        await trio.testing.wait_all_tasks_blocked()
        bridges = [
            bridge for bridge in _live if bridge._token is trio.lowlevel.current_trio_token()
        ]
        before = sum(bridge.crossings for bridge in bridges)
        for bridge in bridges:
            await _probe(bridge)
        await trio.testing.wait_all_tasks_blocked()
        moved = sum(bridge.crossings for bridge in bridges) != before
        quiet = 0 if moved else quiet + 1


def abort_transports(loop: asyncio.AbstractEventLoop) -> None:
    """Abort every socket still open on a loop of a :class:`ThreadBridge`.

    For a loop that is ours alone, when what it serves stops: a connection
    accepted while its server was stopping may still be in its TLS handshake, and
    nothing else closes it. (Selector loops keep their socket transports in
    ``_transports``, a private attribute.)
    """
    for transport in list(getattr(loop, "_transports", {}).values()):
        if transport is not None and not transport.is_closing():
            transport.abort()


def _settle(future: asyncio.Future[_T], result: _T | None, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


class _ThreadCall:
    """One coroutine run on the loop thread for the host, and how it ended."""

    def __init__(self, bridge: ThreadBridge, coroutine: Coroutine[Any, Any, Any]) -> None:
        self._bridge = bridge
        self._coroutine = coroutine
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False
        self.finished = trio.Event()
        self._outcome: tuple[Any, BaseException | None] = (None, None)

    # Loop side.

    def start(self) -> None:
        if self._cancelled:
            self._coroutine.close()
            self._finish(None, None)
            return
        self._task = self._bridge.loop.create_task(self._coroutine)
        self._task.add_done_callback(self._done)

    def cancel(self) -> None:
        self._cancelled = True
        if self._task is not None:
            self._task.cancel()

    def _done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            self._finish(None, None)
        else:
            exc = task.exception()
            self._finish(None if exc is not None else task.result(), exc)

    def _finish(self, result: Any, error: BaseException | None) -> None:
        self._outcome = (result, error)
        self._bridge.to_host(self.finished.set)

    # Host side.

    def result(self) -> Any:
        result, error = self._outcome
        if error is not None:
            raise error
        if self._task is not None and self._task.cancelled():
            # Not cancelled by the host: the loop is going away under the call.
            raise RuntimeError("the call was cancelled on the transport's event loop")
        return result


@contextlib.asynccontextmanager
# Ctrl-C must not land between making the loop thread and guarding it (a loop half
# built, or a thread never stopped): it waits for a checkpoint here.
@trio.lowlevel.enable_ki_protection
async def open_bridge() -> AsyncIterator[Bridge]:
    """A bridge for the running async library: native under asyncio, a thread under Trio.

    Raises:
        RuntimeError: The running library is neither Trio nor asyncio.
    """
    library = sniffio.current_async_library()
    if library == "asyncio":
        yield NativeBridge(asyncio.get_running_loop())
        return
    if library != "trio":
        raise RuntimeError(f"trionodes runs on Trio or asyncio, not {library}")
    bridge = ThreadBridge()
    bridge.start()
    try:
        yield bridge
    finally:
        with trio.CancelScope(shield=True):
            await bridge.stop()
