"""Counters a watch keeps about itself, for users to read or export."""

from __future__ import annotations

import dataclasses
import typing

from ._errors import TrionodesError


@typing.final
@dataclasses.dataclass(frozen=True, slots=True)
class WatchStats:
    """A snapshot of a watch's counters and state.

    Attributes:
        events_received: Messages received from the Curator, over all streams.
        batches_delivered: Batches handed to followers and receivers (for
            :func:`watch_node`: states yielded).
        reconnects: New streams opened after a failed one.
        relists: New streams opened because a relist was due (see
            :func:`open_node_watch`); not failures, and not counted in ``reconnects``.
        last_error: The most recent fault, retried or not; None if there was none.
        connected: Whether the current stream has received a message and not failed.
        synced: Whether the current stream's backlog is in; while false after a
            reconnect, followers still see the last synced state.
    """

    events_received: int = 0
    batches_delivered: int = 0
    reconnects: int = 0
    relists: int = 0
    last_error: TrionodesError | None = None
    connected: bool = False
    synced: bool = False


class Counters:
    """The mutable counters behind :class:`WatchStats`."""

    def __init__(self) -> None:
        self.events_received = 0
        self.batches_delivered = 0
        self.reconnects = 0
        self.relists = 0
        self.last_error: TrionodesError | None = None
        self.connected = False
        self.synced = False

    def snapshot(self) -> WatchStats:
        """The counters as they are now."""
        return WatchStats(
            events_received=self.events_received,
            batches_delivered=self.batches_delivered,
            reconnects=self.reconnects,
            relists=self.relists,
            last_error=self.last_error,
            connected=self.connected,
            synced=self.synced,
        )
