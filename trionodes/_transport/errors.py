"""What went wrong with a call: grpclib, ssl and OS exceptions mapped to ours.

Everything here is a table or a function of plain values, so each row can be tested
with constructed exceptions. The original exception becomes the mapped one's cause.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import Callable

import grpclib.exceptions

from .._errors import (
    ConnectionLost,
    CuratorError,
    ProtocolError,
    StatusCode,
    TLSError,
    TrionodesError,
)

# OpenSSL reasons for a TLS client that got something other than TLS back.
NOT_TLS_REASONS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "UNKNOWN_PROTOCOL",
        "PACKET_LENGTH_TOO_LONG",
        "RECORD_LAYER_FAILURE",
        "HTTP_REQUEST",
    }
)

# X509 verify codes, and what to do about each kind of failure.
_HOSTNAME_MISMATCH = frozenset({62, 64})  # host name, IP address
_OUT_OF_VALIDITY = frozenset({9, 10})  # not yet valid, expired
VERIFY_HINTS: tuple[tuple[frozenset[int], str], ...] = (
    (
        _HOSTNAME_MISMATCH,
        "connect by a name the certificate holds, or pass server_hostname= to "
        "open_curator, or check_hostname=False to client_ssl_context",
    ),
    (_OUT_OF_VALIDITY, "check the clocks, or renew the Curator's certificate"),
)
VERIFY_HINT_OTHERWISE = "is `ca` the cluster CA?"

_REJECTED_CERT = "the Curator rejected the client certificate"
_LIKELY_CERT_REJECTION = (
    "the Curator may have rejected the client certificate "
    "(missing, expired or not issued by the cluster CA)"
)

# TLS alerts from the server, by the end of OpenSSL's reason: what they say. The
# first row whose suffix matches wins.
ALERTS: tuple[tuple[str, str], ...] = (
    ("CERTIFICATE_REQUIRED", f"{_REJECTED_CERT}: none was presented"),
    ("CERTIFICATE_EXPIRED", f"{_REJECTED_CERT}: it has expired"),
    ("UNKNOWN_CA", f"{_REJECTED_CERT}: it was not issued by the cluster CA"),
    ("ACCESS_DENIED", _REJECTED_CERT),
    (
        "HANDSHAKE_FAILURE",
        "the Curator refused the handshake, perhaps for want of a client certificate",
    ),
)


def map_tls_error(exc: ssl.SSLError, where: str) -> TrionodesError:
    """Translate an ``ssl.SSLError`` from a connection to ``where``."""
    failed = f"TLS handshake with {where} failed"
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        hint = next(
            (hint for codes, hint in VERIFY_HINTS if exc.verify_code in codes),
            VERIFY_HINT_OTHERWISE,
        )
        return TLSError(
            f"{failed}: the Curator's certificate could not be verified: {detail} ({hint})"
        )
    reason = exc.reason or ""
    if isinstance(exc, ssl.SSLEOFError) or reason == "UNEXPECTED_EOF_WHILE_READING":
        return ConnectionLost(
            f"connection to {where} was closed during the TLS handshake: "
            f"{_LIKELY_CERT_REJECTION}, or may not serve TLS",
            maybe_tls=True,
        )
    if reason in NOT_TLS_REASONS:
        return TLSError(f"{failed}: the Curator does not seem to serve TLS there ({reason})")
    if "ALERT" in reason:
        for suffix, meaning in ALERTS:
            if reason.endswith(suffix):
                return TLSError(f"{failed}: {meaning} ({reason})")
        if "CERTIFICATE" in reason:
            return TLSError(f"{failed}: {_REJECTED_CERT} ({reason})")
        return TLSError(f"{failed}: the Curator sent a TLS alert ({reason})")
    return TLSError(f"TLS with {where} failed: {exc}")


@dataclasses.dataclass(frozen=True)
class GoAway:
    """A GOAWAY frame the server closed a connection with.

    Attributes:
        error_code: The HTTP/2 error code's name, e.g. ``NO_ERROR``.
        debug_data: The frame's opaque debug data.
    """

    error_code: str
    debug_data: bytes

    @property
    def too_many_pings(self) -> bool:
        """The server limits how often it accepts pings (gRPC's ``too_many_pings``)."""
        return self.error_code == "ENHANCE_YOUR_CALM" and self.debug_data == b"too_many_pings"

    def __str__(self) -> str:
        debug = self.debug_data.decode("utf-8", "replace")
        return f"GOAWAY {self.error_code}" + (f" ({debug})" if debug else "")


@dataclasses.dataclass(frozen=True)
class ConnectionTrace:
    """How the latest connection of a channel went, as far as the client saw it.

    Attributes:
        tls: The channel speaks TLS.
        established: The transport came up (with TLS: the client's side of the
            handshake completed).
        received: The server sent some HTTP/2 data.
        ping_unanswered: The client closed it because a keepalive ping went
            unanswered.
        goaway: The GOAWAY the server closed it with, if it did.
        lost_with: The exception the connection was lost with, if any.
    """

    tls: bool
    established: bool
    received: bool
    ping_unanswered: bool
    goaway: GoAway | None
    lost_with: BaseException | None


# What a GOAWAY's error code says, after its name.
GOAWAY_MEANINGS = {
    "NO_ERROR": ": it is shutting down or restarting",
    "ENHANCE_YOUR_CALM": ": it finds the client too busy",
    "PROTOCOL_ERROR": ": it found an HTTP/2 protocol error",
    "INTERNAL_ERROR": ": it failed internally",
}


def explain_lost(trace: ConnectionTrace | None, where: str) -> TrionodesError | None:
    """Say why a connection was lost, when its trace tells more than grpclib did."""
    if trace is not None and trace.goaway is not None:
        why = GOAWAY_MEANINGS.get(trace.goaway.error_code, "")
        if trace.goaway.too_many_pings:
            why = ": it limits how often it accepts keepalive pings"
        return ConnectionLost(f"{where} closed the connection with {trace.goaway}{why}")
    if trace is not None and trace.ping_unanswered:
        # Not a TLS matter, whatever was (not) received before.
        return ConnectionLost(
            f"connection to {where} closed as dead: the Curator did not answer a "
            f"keepalive ping in time"
        )
    if trace is not None and isinstance(trace.lost_with, TrionodesError):
        # Refused by our own check of the server, before anything was sent.
        return trace.lost_with
    if trace is None or trace.received:
        return None
    if isinstance(trace.lost_with, ssl.SSLError):
        return map_tls_error(trace.lost_with, where)
    if trace.tls and trace.established:
        return ConnectionLost(
            f"connection to {where} was closed right after the TLS handshake, before "
            f"the Curator sent anything: {_LIKELY_CERT_REJECTION}",
            maybe_tls=True,
        )
    if not trace.tls:
        return ConnectionLost(
            f"connection to {where} was closed before the Curator sent anything: if it "
            f"serves TLS, pass ssl=trionodes.client_ssl_context(...) to open_curator",
            maybe_tls=True,
        )
    return None


def _from_status(exc: grpclib.exceptions.GRPCError, where: str) -> TrionodesError:
    return CuratorError(StatusCode(exc.status.value), exc.message or "")


def _from_http2(exc: grpclib.exceptions.ProtocolError, where: str) -> TrionodesError:
    return ProtocolError(f"HTTP/2 protocol error from {where}: {exc}")


def _from_timeout(exc: asyncio.TimeoutError, where: str) -> TrionodesError:
    return ConnectionLost(f"call to {where} timed out")


# Exceptions whose meaning does not depend on the connection, by type: the first
# row that matches wins.
_BY_TYPE: tuple[tuple[type[BaseException], Callable[..., TrionodesError]], ...] = (
    (grpclib.exceptions.GRPCError, _from_status),
    (grpclib.exceptions.ProtocolError, _from_http2),
    (ssl.SSLError, map_tls_error),
    (asyncio.TimeoutError, _from_timeout),
)


def map_error(
    exc: BaseException, where: str, *, tls: bool, trace: ConnectionTrace | None
) -> TrionodesError:
    """Translate a transport exception into ours.

    TLS failures that retrying cannot fix become :class:`TLSError`; connections that
    merely close during or right after the TLS handshake become a
    :class:`ConnectionLost` with ``maybe_tls`` set, naming TLS and the likely cause
    (the watches retry it a few times). Errors that are already ours pass through.

    Args:
        exc: What the call raised.
        where: The server, for messages (``host:port``).
        tls: The channel speaks TLS.
        trace: The latest connection's trace; None when no connection was made.
    """
    if isinstance(exc, TrionodesError):
        return exc
    if isinstance(exc, grpclib.exceptions.StreamTerminatedError):
        explained = explain_lost(trace, where)
        if explained is None:
            return ConnectionLost(f"stream to {where} terminated: {exc}")
        if trace is not None and exc.__cause__ is None:
            # Keep the real reason (grpclib drops it) in the chain.
            exc.__cause__ = trace.lost_with
        return explained
    for kind, translate in _BY_TYPE:
        if isinstance(exc, kind):
            return translate(exc, where)
    if tls and isinstance(exc, ConnectionError) and not isinstance(exc, ConnectionRefusedError):
        # Raised by connecting, after the TCP connection was made: asyncio reports a
        # connection closed mid-handshake so (an asyncio server sends no TLS alert).
        return ConnectionLost(
            f"connection to {where} was closed during the TLS handshake: "
            f"{_LIKELY_CERT_REJECTION}, or may not serve TLS",
            maybe_tls=True,
        )
    if isinstance(exc, OSError):
        return ConnectionLost(f"connection to {where} failed: {exc}")
    return ConnectionLost(f"call to {where} failed: {exc!r}")
