"""What the end or the silence of a Watch stream means, in each phase of the stream.

A NodesInCluster stream first sends a backlog, then live events. In the backlog, a
Curator that goes quiet has stalled and one that ends the call has broken the
contract; once the backlog is in, a quiet stream is normal (a dead connection is
found by keepalive) and an end is an ordinary lost stream. The watch tasks await the
stream and ask these functions what to raise.
"""

from __future__ import annotations

from .._errors import ConnectionLost, ProtocolError, TrionodesError

__all__ = ["end_of_stream_error", "silence_error", "silence_timeout"]


def silence_timeout(in_backlog: bool, backlog_timeout: float | None) -> float | None:
    """Seconds of silence after which the stream is given up, or None for never.

    Args:
        in_backlog: Whether the stream's backlog is still coming.
        backlog_timeout: The policy's limit for a backlog (see ``RetryPolicy``).
    """
    return backlog_timeout if in_backlog else None


def end_of_stream_error(in_backlog: bool) -> TrionodesError:
    """The error for a Curator that ended the call.

    Args:
        in_backlog: Whether the stream's backlog was still coming.

    Returns:
        :class:`ProtocolError` in the backlog (a Curator never ends it early),
        else :class:`ConnectionLost`.
    """
    if in_backlog:
        return ProtocolError("the Curator closed the stream before its backlog ended")
    return ConnectionLost("the Curator ended the stream")


def silence_error(timeout: float) -> ConnectionLost:
    """The error for a backlog that stalled: nothing arrived for ``timeout`` seconds."""
    return ConnectionLost(
        f"the Curator sent nothing for {timeout:g} s in the middle of its backlog"
    )
