"""The exceptions trionodes raises.

The hierarchy is small and flat: every error is a :class:`TrionodesError`, and the
transport's own exception types never leak out (they are mapped at the boundary and
kept as ``__cause__``).
"""

from __future__ import annotations

import enum


class StatusCode(enum.IntEnum):
    """gRPC status codes, as a Curator returns them."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class TrionodesError(Exception):
    """Base class of every error trionodes raises."""


class CuratorError(TrionodesError):
    """The Curator ended a call with a non-OK gRPC status.

    Attributes:
        status: The gRPC status code.
        details: The server's message, or an empty string.
    """

    def __init__(self, status: StatusCode, details: str = "") -> None:
        self.status = status
        self.details = details
        text = f"Curator answered {status.name}"
        super().__init__(f"{text}: {details}" if details else text)


class ConnectionLost(TrionodesError):
    """The connection to the Curator failed, or a stream ended before it should have.

    The underlying transport error, if any, is the ``__cause__``.

    Args:
        message: What happened.
        maybe_tls: See :attr:`maybe_tls`.
    """

    def __init__(self, message: str, *, maybe_tls: bool = False) -> None:
        super().__init__(message)
        self._maybe_tls = maybe_tls

    @property
    def maybe_tls(self) -> bool:
        """Whether the connection closed in a way a TLS mismatch would explain.

        True when it closed during or right after its TLS handshake, or (in plain
        text) before the server sent anything: most likely a rejected client
        certificate or TLS on one side only, though a network fault looks the same.
        A watch retries such closes a few times (see :attr:`RetryPolicy.tls_closures`)
        and then ends with a :class:`TLSError`.
        """
        return self._maybe_tls


class ProtocolError(TrionodesError):
    """The Curator sent something that breaks the wire contract.

    For example undecodable bytes, or a stream that closed before its backlog ended.
    The event that carried it is not applied.
    """


class WatchClosed(TrionodesError):
    """A follower was attached to, or was still following, a watch that has closed."""


class TLSError(TrionodesError):
    """TLS with the Curator failed in a way that trying again will not fix.

    For example: the Curator's certificate could not be verified (wrong CA, wrong
    host name, expired), the Curator rejected the client certificate with a TLS alert
    (missing, expired, not issued by the cluster CA), or the Curator does not speak
    TLS on that port. Fix the configuration (see :func:`client_ssl_context`).

    Deliberately not a :class:`ConnectionLost`: code that reconnects on
    :class:`ConnectionLost` must not retry these forever. When the connection merely
    drops during or right after the TLS handshake, without telling why (an asyncio
    server, for one, sends no alert), a watch tries again a few times (see
    :attr:`RetryPolicy.tls_closures`) and then ends with a :class:`TLSError` whose
    message names TLS and the likely cause. The underlying ``ssl.SSLError``, or the
    last such connection's error, is the ``__cause__``.
    """
