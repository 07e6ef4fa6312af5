"""Tests of trionodes._core.stream: what a stream's end or silence means in each phase."""

from __future__ import annotations

import trionodes
from trionodes._core.stream import end_of_stream_error, silence_error, silence_timeout


def test_an_end_in_the_backlog_breaks_the_contract_and_later_is_a_lost_stream() -> None:
    early = end_of_stream_error(in_backlog=True)
    assert isinstance(early, trionodes.ProtocolError)
    assert str(early) == "the Curator closed the stream before its backlog ended"
    late = end_of_stream_error(in_backlog=False)
    assert isinstance(late, trionodes.ConnectionLost)
    assert str(late) == "the Curator ended the stream"


def test_only_a_backlog_times_out() -> None:
    assert silence_timeout(True, 60.0) == 60.0
    assert silence_timeout(True, None) is None
    assert silence_timeout(False, 60.0) is None
    error = silence_error(2.5)
    assert isinstance(error, trionodes.ConnectionLost)
    assert str(error) == "the Curator sent nothing for 2.5 s in the middle of its backlog"
