"""What both fakes add to the cluster model: waiting for calls to end, and ending them."""

from __future__ import annotations

import anyio

from .._errors import StatusCode
from ._model import ClusterModel

# How long open calls get to end cleanly when a fake shuts down (seconds).
_SHUTDOWN_GRACE = 1.0


class ServedCluster(ClusterModel):
    """The cluster model, served to clients of this process by one of the fakes."""

    # One event for every waiter: a new one per waiter would strand the others.
    _idle: anyio.Event | None = None

    async def wait_idle(self) -> None:
        """Return once no Watch call is being served."""
        while self.active_streams:
            if self._idle is None or self._idle.is_set():
                self._idle = anyio.Event()
            await self._idle.wait()

    def _became_idle(self) -> None:
        if self._idle is not None:
            self._idle.set()

    async def _shut_down(self) -> None:
        """End the calls still open with ``UNAVAILABLE``, and give them a moment to end.

        A status, as a Curator shutting down sends: a call that just stopped would
        leave its client waiting (over a network, until TCP gives up). A stall ends
        first, so that the status gets through.
        """
        self.resume()
        self.fail_streams(StatusCode.UNAVAILABLE, "the Curator is shutting down")
        with anyio.CancelScope(shield=True), anyio.move_on_after(_SHUTDOWN_GRACE):
            await self.wait_idle()
