"""The run harness every command shares: Trio, logging, and how a run ends.

A command builds its async main and hands it to :func:`run_command`, which runs it
under ``trio.run`` and turns how it ended into an exit status: Ctrl-C and a reader
that closed stdout are a clean end, an expected error is printed as one
``trionodes: error: ...`` line (no traceback), anything else is a bug and propagates.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Awaitable, Callable

import click
import trio

from trionodes import TLSError
from trionodes._groups import leaves

from . import EXIT_ERROR, EXIT_OK, EXIT_TIMEOUT
from ._connect import SERVER_TLS_HINT, terminal_words

_ErrorTypes = type[BaseException] | tuple[type[BaseException], ...]


class CommandError(Exception):
    """A command cannot go on, for a reason printed as the message (exit status 1)."""


class TimedOut(CommandError):
    """``--timeout`` ran out; the message says what was missing (exit status 3)."""


class SyncDeadline:
    """A cancel scope that gives a command ``timeout`` seconds to get in sync.

    Run the command's work inside :attr:`scope`; call :meth:`met` once it is in
    sync (for example once the whole cluster has been read): the deadline is lifted
    and the work goes on for as long as it likes. :attr:`expired` says whether the
    deadline cancelled the work.
    """

    def __init__(self, timeout: float | None) -> None:
        """Start the clock: ``timeout`` seconds from now; None for no deadline."""
        self.timeout = timeout
        deadline = math.inf if timeout is None else trio.current_time() + timeout
        self.scope = trio.CancelScope(deadline=deadline)

    def met(self) -> None:
        """In sync in time: lift the deadline."""
        self.scope.deadline = math.inf

    @property
    def expired(self) -> bool:
        """Whether the deadline passed, cancelling the work in :attr:`scope`."""
        return self.scope.cancelled_caught


def run_command(
    main: Callable[[], Awaitable[object]],
    *,
    error: _ErrorTypes,
    on_interrupt: Callable[[], object] | None = None,
    hint: Callable[[BaseException], str | None] | None = None,
) -> int:
    """Run ``main`` under Trio; return the exit status (``EXIT_OK`` or ``EXIT_ERROR``).

    Args:
        main: The command's async main, called with no arguments.
        error: The exception types that end the command with an error: each is
            printed on stderr as ``trionodes: error: MESSAGE``, then ``hint``'s
            advice if any, and the status is ``EXIT_ERROR``.
        on_interrupt: Called after Ctrl-C ended the run, e.g. to say goodbye.
        hint: Gives what to try next after an error, in the command's flags,
            printed as ``trionodes: hint: ADVICE``, or None. By default a TLS error
            gets advice about the TLS options of a single server.

    Ctrl-C and a reader that closed stdout end the run with ``EXIT_OK``. A
    :class:`TimedOut` is printed as an error too, with ``EXIT_TIMEOUT``. Any other
    exception is a bug and propagates.
    """
    status = EXIT_OK
    try:
        trio.run(main)
    except* KeyboardInterrupt:
        if on_interrupt is not None:
            on_interrupt()
    except* BrokenPipeError:
        _silence_stdout()
    except* TimedOut as group:
        for exc in leaves(group):
            click.echo(f"trionodes: error: {terminal_words(str(exc))}", err=True)
        status = EXIT_TIMEOUT
    except* error as group:
        for exc in leaves(group):
            click.echo(f"trionodes: error: {terminal_words(str(exc))}", err=True)
            # The message speaks of the Python API; say it in options too.
            advice = (hint or _server_tls_hint)(exc)
            if advice is not None:
                click.echo(f"trionodes: hint: {advice}", err=True)
        status = EXIT_ERROR
    return status


def _server_tls_hint(exc: BaseException) -> str | None:
    return SERVER_TLS_HINT if isinstance(exc, TLSError) else None


def _silence_stdout() -> None:
    # The reader went away (`trionodes watch | head`): point stdout at /dev/null so
    # that flushing it at exit does not fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


class _TerminalFormatter(logging.Formatter):
    """Formats a log record with the library's keywords named as flags."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a line, through :func:`terminal_words`."""
        return terminal_words(super().format(record))


def log_to_stderr() -> None:
    """Print the library's log (failures, reconnects, recoveries) on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_TerminalFormatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    # The error that ends a watch is printed once, by run_command, as `trionodes: error:`.
    handler.addFilter(lambda record: record.levelno < logging.ERROR)
    library_logger().addHandler(handler)


def library_logger() -> logging.Logger:
    """The ``trionodes`` logger, set to pass on INFO and above."""
    logger = logging.getLogger("trionodes")
    # INFO: also the line saying that a watch is back after failures.
    logger.setLevel(logging.INFO)
    return logger
