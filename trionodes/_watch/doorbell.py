"""The doorbell: how the stream task wakes the task that delivers to one receiver."""

from __future__ import annotations

import contextlib

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream


class Doorbell:
    """Wakes one waiting task; rings while nobody waits are remembered (once)."""

    def __init__(self) -> None:
        send: MemoryObjectSendStream[None]
        receive: MemoryObjectReceiveStream[None]
        # A one-slot channel: a full slot is a ring nobody has answered yet.
        send, receive = anyio.create_memory_object_stream[None](1)
        self._send = send
        self._receive = receive

    def ring(self) -> None:
        """Wake the waiting task, or the next one to wait; does nothing once closed."""
        with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
            self._send.send_nowait(None)

    async def wait(self) -> None:
        """Wait for a ring (a checkpoint even when one is already waiting).

        Raises:
            anyio.EndOfStream: The doorbell was closed, before or while waiting.
        """
        try:
            await self._receive.receive()
        except anyio.ClosedResourceError:
            # Closed while waiting: the receiving end went with the sending one.
            raise anyio.EndOfStream from None

    def close(self) -> None:
        """Free both ends: a task waiting, now or later, gets ``anyio.EndOfStream``."""
        self._send.close()
        self._receive.close()
