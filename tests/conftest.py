"""Shared fixtures: a fake Curator on loopback and a connection to it."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator

import pytest

import trionodes
from trionodes.testing import FakeCurator, open_fake_curator

# Tests send Ctrl-C to the commands they start. A program started as a background
# job inherits SIGINT ignored, and so would those commands: catch it here, so that
# the commands start with it at its default (a caught signal is reset on exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
async def fake() -> AsyncIterator[FakeCurator]:
    # Small backlog events, so that even small clusters arrive over several events.
    async with open_fake_curator(backlog_nodes_per_event=3) as fake:
        yield fake


@pytest.fixture
async def curator(fake: FakeCurator) -> AsyncIterator[trionodes.Curator]:
    async with trionodes.open_curator(fake.host, fake.port) as curator:
        yield curator
