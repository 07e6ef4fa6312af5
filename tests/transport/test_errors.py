"""The error mapping of trionodes._transport.errors, row by row, with built exceptions.

No network: every exception is constructed (ssl errors with the attributes OpenSSL
sets on real ones), except in the last section, where real ones come out of TLS
handshakes run over memory buffers with the installed OpenSSL.
"""

from __future__ import annotations

import asyncio
import datetime
import errno
import socket
import ssl
from collections.abc import Callable
from typing import TypeVar

import grpclib.const
import grpclib.exceptions
import pytest
import trustme

from trionodes._errors import (
    ConnectionLost,
    CuratorError,
    ProtocolError,
    StatusCode,
    TLSError,
    TrionodesError,
    WatchClosed,
)
from trionodes._transport.errors import (
    _BY_TYPE,
    ALERTS,
    GOAWAY_MEANINGS,
    NOT_TLS_REASONS,
    VERIFY_HINT_OTHERWISE,
    VERIFY_HINTS,
    ConnectionTrace,
    GoAway,
    explain_lost,
    map_error,
    map_tls_error,
)

WHERE = "curator.example:7835"
E = TypeVar("E", bound=ssl.SSLError)
PAST = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)


# Building ssl errors as OpenSSL does: a constructed one lacks the attributes _ssl
# sets (reason, library, verify_code, verify_message), so set them.


def ssl_error(cls: type[E], reason: str | None = None, text: str = "ssl failure") -> E:
    exc = cls(1, f"[SSL: {reason}] {text}" if reason else text)
    # typeshed says str; _ssl sets None when OpenSSL gives no reason.
    exc.reason = reason  # type: ignore[assignment]
    exc.library = "SSL" if reason else None  # type: ignore[assignment]
    return exc


def verify_error(
    code: int, message: str | None = "certificate verify failed: detail"
) -> ssl.SSLCertVerificationError:
    exc = ssl_error(ssl.SSLCertVerificationError, "CERTIFICATE_VERIFY_FAILED", "verify failed")
    exc.verify_code = code
    exc.verify_message = message  # type: ignore[assignment]
    return exc


def trace(
    *,
    tls: bool = True,
    established: bool = True,
    received: bool = False,
    ping_unanswered: bool = False,
    goaway: GoAway | None = None,
    lost_with: BaseException | None = None,
) -> ConnectionTrace:
    return ConnectionTrace(
        tls=tls,
        established=established,
        received=received,
        ping_unanswered=ping_unanswered,
        goaway=goaway,
        lost_with=lost_with,
    )


def terminated() -> grpclib.exceptions.StreamTerminatedError:
    return grpclib.exceptions.StreamTerminatedError("Connection lost")


def test_ssl_error_attributes_are_assignable() -> None:
    # The helpers above rely on it; real errors get them from _ssl.
    exc = ssl_error(ssl.SSLEOFError, "UNEXPECTED_EOF_WHILE_READING")
    assert exc.reason == "UNEXPECTED_EOF_WHILE_READING"
    assert isinstance(exc, ssl.SSLEOFError)
    verify = verify_error(62, "Hostname mismatch")
    assert (verify.verify_code, verify.verify_message) == (62, "Hostname mismatch")


# map_tls_error: certificate verification.

VERIFY_CASES = [
    pytest.param(code, hint, id=f"code-{code}")
    for codes, hint in VERIFY_HINTS
    for code in sorted(codes)
]


@pytest.mark.parametrize(("code", "hint"), VERIFY_CASES)
def test_verify_failure_hint_by_code(code: int, hint: str) -> None:
    mapped = map_tls_error(verify_error(code, "the message"), WHERE)
    assert type(mapped) is TLSError
    text = str(mapped)
    assert f"TLS handshake with {WHERE} failed" in text
    assert "certificate could not be verified: the message" in text
    assert f"({hint})" in text
    assert VERIFY_HINT_OTHERWISE not in text


def test_verify_hint_codes_do_not_overlap() -> None:
    # Otherwise a later row would be dead for the shared codes.
    seen: set[int] = set()
    for codes, _ in VERIFY_HINTS:
        assert not seen & codes, f"codes in two rows of VERIFY_HINTS: {seen & codes}"
        seen |= codes


@pytest.mark.parametrize(
    "code",
    [
        20,  # unable to get local issuer certificate
        18,  # self-signed certificate
        0,
        -1,
    ],
)
def test_verify_failure_with_other_code_asks_about_ca(code: int) -> None:
    assert all(code not in codes for codes, _ in VERIFY_HINTS)
    mapped = map_tls_error(verify_error(code, "unable to get local issuer certificate"), WHERE)
    assert type(mapped) is TLSError
    assert f"({VERIFY_HINT_OTHERWISE})" in str(mapped)
    assert "unable to get local issuer certificate" in str(mapped)
    assert WHERE in str(mapped)


def test_verify_failure_detail_falls_back_to_reason_then_text() -> None:
    no_message = verify_error(20, None)
    assert "verified: CERTIFICATE_VERIFY_FAILED (" in str(map_tls_error(no_message, WHERE))
    no_reason = verify_error(20, "")
    no_reason.reason = None  # type: ignore[assignment]
    assert f"verified: {no_reason} (" in str(map_tls_error(no_reason, WHERE))


def test_verify_failure_wins_over_its_reason() -> None:
    # A verification error is never read as an alert or "not TLS", whatever its reason.
    exc = verify_error(20)
    exc.reason = "WRONG_VERSION_NUMBER"
    assert "could not be verified" in str(map_tls_error(exc, WHERE))


# map_tls_error: the connection closed during the handshake.


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(ssl_error(ssl.SSLEOFError, None, "EOF occurred"), id="eof-no-reason"),
        pytest.param(ssl_error(ssl.SSLEOFError, "UNEXPECTED_EOF_WHILE_READING"), id="eof"),
        pytest.param(ssl_error(ssl.SSLError, "UNEXPECTED_EOF_WHILE_READING"), id="reason"),
    ],
)
def test_eof_during_handshake_is_likely_tls(exc: ssl.SSLError) -> None:
    mapped = map_tls_error(exc, WHERE)
    assert isinstance(mapped, ConnectionLost)
    assert mapped.maybe_tls
    text = str(mapped)
    assert f"connection to {WHERE} was closed during the TLS handshake" in text
    assert "client certificate" in text
    assert "may not serve TLS" in text


# map_tls_error: the server does not speak TLS.


@pytest.mark.parametrize("reason", sorted(NOT_TLS_REASONS))
def test_not_tls_reasons(reason: str) -> None:
    mapped = map_tls_error(ssl_error(ssl.SSLError, reason), WHERE)
    assert type(mapped) is TLSError
    text = str(mapped)
    assert f"TLS handshake with {WHERE} failed" in text
    assert "does not seem to serve TLS" in text
    assert f"({reason})" in text


# map_tls_error: alerts from the server.

ALERT_PREFIXES = ["SSLV3_ALERT_", "TLSV1_ALERT_", "TLSV13_ALERT_"]


@pytest.mark.parametrize("prefix", ALERT_PREFIXES)
@pytest.mark.parametrize(("suffix", "meaning"), ALERTS, ids=[suffix for suffix, _ in ALERTS])
def test_alert_rows(prefix: str, suffix: str, meaning: str) -> None:
    reason = prefix + suffix
    mapped = map_tls_error(ssl_error(ssl.SSLError, reason), WHERE)
    assert type(mapped) is TLSError
    assert str(mapped) == f"TLS handshake with {WHERE} failed: {meaning} ({reason})"


def test_every_alert_row_is_reachable() -> None:
    # The first matching row wins: a row whose suffix ends with an earlier row's
    # suffix could never be chosen.
    for i, (suffix, _) in enumerate(ALERTS):
        for earlier, _ in ALERTS[:i]:
            assert not suffix.endswith(earlier), f"ALERTS row {suffix} shadowed by {earlier}"


@pytest.mark.parametrize(
    "reason",
    ["SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_REVOKED", "TLSV1_ALERT_CERTIFICATE_X"],
)
def test_other_certificate_alert_is_a_rejection(reason: str) -> None:
    assert not any(reason.endswith(suffix) for suffix, _ in ALERTS)
    mapped = map_tls_error(ssl_error(ssl.SSLError, reason), WHERE)
    assert type(mapped) is TLSError
    assert str(mapped) == (
        f"TLS handshake with {WHERE} failed: the Curator rejected the client certificate ({reason})"
    )


@pytest.mark.parametrize(
    "reason", ["TLSV1_ALERT_PROTOCOL_VERSION", "TLSV1_ALERT_INTERNAL_ERROR", "SSLV3_ALERT_X"]
)
def test_other_alert(reason: str) -> None:
    mapped = map_tls_error(ssl_error(ssl.SSLError, reason), WHERE)
    assert type(mapped) is TLSError
    assert str(mapped) == (
        f"TLS handshake with {WHERE} failed: the Curator sent a TLS alert ({reason})"
    )


@pytest.mark.parametrize("reason", [None, "", "NO_SHARED_CIPHER", "BAD_SIGNATURE"])
def test_other_ssl_error(reason: str | None) -> None:
    exc = ssl_error(ssl.SSLError, reason, "something odd")
    mapped = map_tls_error(exc, WHERE)
    assert type(mapped) is TLSError
    assert str(mapped) == f"TLS with {WHERE} failed: {exc}"
    assert "something odd" in str(mapped)


# explain_lost and ConnectionTrace.


def test_connection_trace_is_frozen() -> None:
    t = trace()
    with pytest.raises(AttributeError):
        t.received = True  # type: ignore[misc]


@pytest.mark.parametrize("received", [False, True])
@pytest.mark.parametrize("tls", [False, True])
@pytest.mark.parametrize(
    "lost_with", [None, ssl_error(ssl.SSLError, "TLSV13_ALERT_CERTIFICATE_REQUIRED"), OSError("x")]
)
def test_ping_unanswered_is_a_dead_connection(
    received: bool, tls: bool, lost_with: BaseException | None
) -> None:
    explained = explain_lost(
        trace(tls=tls, received=received, ping_unanswered=True, lost_with=lost_with), WHERE
    )
    assert isinstance(explained, ConnectionLost)
    assert not explained.maybe_tls
    assert str(explained) == (
        f"connection to {WHERE} closed as dead: the Curator did not answer a keepalive ping in time"
    )


def test_no_trace_explains_nothing() -> None:
    assert explain_lost(None, WHERE) is None


@pytest.mark.parametrize("tls", [False, True])
@pytest.mark.parametrize(
    "lost_with", [None, ssl_error(ssl.SSLError, "SSLV3_ALERT_CERTIFICATE_EXPIRED")]
)
def test_received_explains_nothing(tls: bool, lost_with: BaseException | None) -> None:
    assert explain_lost(trace(tls=tls, received=True, lost_with=lost_with), WHERE) is None


@pytest.mark.parametrize(
    "lost_with",
    [
        ssl_error(ssl.SSLError, "TLSV13_ALERT_CERTIFICATE_REQUIRED"),
        ssl_error(ssl.SSLError, "SSLV3_ALERT_CERTIFICATE_EXPIRED"),
        ssl_error(ssl.SSLEOFError, "UNEXPECTED_EOF_WHILE_READING"),
        verify_error(62),
    ],
)
@pytest.mark.parametrize("established", [False, True])
def test_lost_with_ssl_error_is_mapped_as_tls(lost_with: ssl.SSLError, established: bool) -> None:
    explained = explain_lost(trace(established=established, lost_with=lost_with), WHERE)
    expected = map_tls_error(lost_with, WHERE)
    assert explained is not None
    assert type(explained) is type(expected)
    assert str(explained) == str(expected)


@pytest.mark.parametrize("lost_with", [None, ConnectionResetError("reset")])
def test_tls_closed_after_handshake_is_likely_tls(lost_with: BaseException | None) -> None:
    explained = explain_lost(trace(tls=True, established=True, lost_with=lost_with), WHERE)
    assert isinstance(explained, ConnectionLost)
    assert explained.maybe_tls
    text = str(explained)
    assert f"connection to {WHERE} was closed right after the TLS handshake" in text
    assert "before the Curator sent anything" in text
    assert "client certificate" in text


@pytest.mark.parametrize("established", [False, True])
@pytest.mark.parametrize("lost_with", [None, ConnectionResetError("reset")])
def test_plain_text_closed_before_anything_is_likely_tls(
    established: bool, lost_with: BaseException | None
) -> None:
    explained = explain_lost(trace(tls=False, established=established, lost_with=lost_with), WHERE)
    assert isinstance(explained, ConnectionLost)
    assert explained.maybe_tls
    text = str(explained)
    assert f"connection to {WHERE} was closed before the Curator sent anything" in text
    assert "ssl=trionodes.client_ssl_context(...)" in text


def test_tls_not_established_without_ssl_error_explains_nothing() -> None:
    assert explain_lost(trace(tls=True, established=False), WHERE) is None
    assert explain_lost(trace(tls=True, established=False, lost_with=OSError()), WHERE) is None


# map_error: stream terminations, through explain_lost.


@pytest.mark.parametrize("tls", [False, True])
def test_terminated_without_trace(tls: bool) -> None:
    exc = terminated()
    mapped = map_error(exc, WHERE, tls=tls, trace=None)
    assert isinstance(mapped, ConnectionLost)
    assert not mapped.maybe_tls
    assert str(mapped) == f"stream to {WHERE} terminated: Connection lost"
    assert exc.__cause__ is None


@pytest.mark.parametrize("tls", [False, True])
def test_terminated_after_data_received(tls: bool) -> None:
    lost_with = ConnectionResetError("reset")
    exc = terminated()
    mapped = map_error(
        exc, WHERE, tls=tls, trace=trace(tls=tls, received=True, lost_with=lost_with)
    )
    assert isinstance(mapped, ConnectionLost)
    assert not mapped.maybe_tls
    assert "terminated" in str(mapped)
    assert WHERE in str(mapped)
    # Nothing explained: the chain is left as grpclib made it.
    assert exc.__cause__ is None


def test_terminated_ping_unanswered_mentions_keepalive() -> None:
    exc = terminated()
    mapped = map_error(exc, WHERE, tls=True, trace=trace(received=True, ping_unanswered=True))
    assert isinstance(mapped, ConnectionLost)
    assert not mapped.maybe_tls
    assert "keepalive" in str(mapped)
    assert WHERE in str(mapped)


@pytest.mark.parametrize(
    "lost_with",
    [
        ssl_error(ssl.SSLError, "TLSV13_ALERT_CERTIFICATE_REQUIRED"),
        ssl_error(ssl.SSLError, "TLSV1_ALERT_UNKNOWN_CA"),
        ssl_error(ssl.SSLEOFError, "UNEXPECTED_EOF_WHILE_READING"),
    ],
)
def test_terminated_with_ssl_error_maps_it_and_chains_it(lost_with: ssl.SSLError) -> None:
    exc = terminated()
    mapped = map_error(exc, WHERE, tls=True, trace=trace(lost_with=lost_with))
    expected = map_tls_error(lost_with, WHERE)
    assert type(mapped) is type(expected)
    assert str(mapped) == str(expected)
    assert exc.__cause__ is lost_with


def test_terminated_keeps_an_existing_cause() -> None:
    exc = terminated()
    earlier = RuntimeError("earlier")
    exc.__cause__ = earlier
    mapped = map_error(
        exc,
        WHERE,
        tls=True,
        trace=trace(lost_with=ssl_error(ssl.SSLError, "TLSV1_ALERT_UNKNOWN_CA")),
    )
    assert type(mapped) is TLSError
    assert exc.__cause__ is earlier


def test_terminated_tls_nothing_received_is_likely_tls() -> None:
    exc = terminated()
    mapped = map_error(exc, WHERE, tls=True, trace=trace(tls=True, established=True))
    assert isinstance(mapped, ConnectionLost)
    assert mapped.maybe_tls
    assert "right after the TLS handshake" in str(mapped)
    assert WHERE in str(mapped)


def test_terminated_plain_text_nothing_received_is_likely_tls() -> None:
    lost_with = ConnectionResetError("reset")
    exc = terminated()
    mapped = map_error(exc, WHERE, tls=False, trace=trace(tls=False, lost_with=lost_with))
    assert isinstance(mapped, ConnectionLost)
    assert mapped.maybe_tls
    assert "before the Curator sent anything" in str(mapped)
    assert WHERE in str(mapped)
    assert exc.__cause__ is lost_with


def test_terminated_tls_not_established_is_plain_lost() -> None:
    mapped = map_error(terminated(), WHERE, tls=True, trace=trace(tls=True, established=False))
    assert isinstance(mapped, ConnectionLost)
    assert not mapped.maybe_tls
    assert "terminated" in str(mapped)


# map_error: the type table.

# One sample of each row's type, with what it must map to. A row added to _BY_TYPE
# without a sample here fails test_every_type_row_has_a_sample.
TYPE_SAMPLES: dict[type[BaseException], tuple[BaseException, type[TrionodesError], str]] = {
    grpclib.exceptions.GRPCError: (
        grpclib.exceptions.GRPCError(grpclib.const.Status.UNAVAILABLE, "try later"),
        CuratorError,
        "Curator answered UNAVAILABLE: try later",
    ),
    grpclib.exceptions.ProtocolError: (
        grpclib.exceptions.ProtocolError("bad frame"),
        ProtocolError,
        f"HTTP/2 protocol error from {WHERE}: bad frame",
    ),
    ssl.SSLError: (
        ssl_error(ssl.SSLError, "TLSV1_ALERT_UNKNOWN_CA"),
        TLSError,
        f"TLS handshake with {WHERE} failed: the Curator rejected the client certificate: "
        f"it was not issued by the cluster CA (TLSV1_ALERT_UNKNOWN_CA)",
    ),
    asyncio.TimeoutError: (TimeoutError(), ConnectionLost, f"call to {WHERE} timed out"),
}


def test_every_type_row_has_a_sample() -> None:
    kinds = [kind for kind, _ in _BY_TYPE]
    missing = [kind for kind in kinds if kind not in TYPE_SAMPLES]
    assert not missing, f"rows of _BY_TYPE without a sample in TYPE_SAMPLES: {missing}"
    assert len(set(kinds)) == len(kinds)


@pytest.mark.parametrize("tls", [False, True])
@pytest.mark.parametrize(
    ("kind", "translate"), _BY_TYPE, ids=[kind.__name__ for kind, _ in _BY_TYPE]
)
def test_type_rows(
    kind: type[BaseException], translate: Callable[..., TrionodesError], tls: bool
) -> None:
    exc, expected_type, expected_text = TYPE_SAMPLES[kind]
    assert isinstance(exc, kind)
    # The row, not an earlier one, handles the sample.
    first = next(row for row, _ in _BY_TYPE if isinstance(exc, row))
    assert first is kind
    for trace_ in (None, trace(tls=tls), trace(tls=tls, received=True, ping_unanswered=True)):
        mapped = map_error(exc, WHERE, tls=tls, trace=trace_)
        assert type(mapped) is expected_type
        assert str(mapped) == expected_text
        direct = translate(exc, WHERE)
        assert type(direct) is expected_type
        assert str(direct) == expected_text


@pytest.mark.parametrize("status", list(grpclib.const.Status), ids=lambda s: s.name)
def test_every_grpc_status_maps_to_ours(status: grpclib.const.Status) -> None:
    mapped = map_error(
        grpclib.exceptions.GRPCError(status, "some details"), WHERE, tls=True, trace=None
    )
    assert type(mapped) is CuratorError
    assert mapped.status is StatusCode(status.value)
    assert mapped.status.name == status.name
    assert mapped.details == "some details"


def test_grpc_status_without_message() -> None:
    mapped = map_error(
        grpclib.exceptions.GRPCError(grpclib.const.Status.NOT_FOUND), WHERE, tls=False, trace=None
    )
    assert type(mapped) is CuratorError
    assert mapped.status is StatusCode.NOT_FOUND
    assert mapped.details == ""
    assert str(mapped) == "Curator answered NOT_FOUND"


def test_ssl_error_through_map_error_is_map_tls_error() -> None:
    for exc in (verify_error(62), ssl_error(ssl.SSLError, "WRONG_VERSION_NUMBER")):
        mapped = map_error(exc, WHERE, tls=True, trace=None)
        expected = map_tls_error(exc, WHERE)
        assert type(mapped) is type(expected)
        assert str(mapped) == str(expected)


# map_error: OS errors and the rest.


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        ConnectionAbortedError(errno.ECONNABORTED, "aborted"),
        BrokenPipeError(errno.EPIPE, "Broken pipe"),
        ConnectionError("Connection lost"),
    ],
    ids=type,
)
def test_connection_error_with_tls_is_likely_tls(exc: ConnectionError) -> None:
    mapped = map_error(exc, WHERE, tls=True, trace=None)
    assert isinstance(mapped, ConnectionLost)
    assert mapped.maybe_tls
    assert f"connection to {WHERE} was closed during the TLS handshake" in str(mapped)


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        ConnectionAbortedError(errno.ECONNABORTED, "aborted"),
        BrokenPipeError(errno.EPIPE, "Broken pipe"),
    ],
    ids=type,
)
def test_connection_error_without_tls_is_lost(exc: ConnectionError) -> None:
    mapped = map_error(exc, WHERE, tls=False, trace=None)
    assert isinstance(mapped, ConnectionLost)
    assert not mapped.maybe_tls
    assert str(mapped) == f"connection to {WHERE} failed: {exc}"


@pytest.mark.parametrize("tls", [False, True])
def test_connection_refused_is_never_tls(tls: bool) -> None:
    exc = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed")
    mapped = map_error(exc, WHERE, tls=tls, trace=None)
    assert isinstance(mapped, ConnectionLost)
    assert not mapped.maybe_tls
    assert str(mapped) == f"connection to {WHERE} failed: {exc}"
    assert "Connect call failed" in str(mapped)


@pytest.mark.parametrize(
    "exc",
    [
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
        OSError(errno.EHOSTUNREACH, "No route to host"),
        OSError("Multiple exceptions: ..."),
    ],
    ids=["gaierror", "unreachable", "multiple"],
)
@pytest.mark.parametrize("tls", [False, True])
def test_other_os_error_is_lost(exc: OSError, tls: bool) -> None:
    mapped = map_error(exc, WHERE, tls=tls, trace=None)
    assert isinstance(mapped, ConnectionLost)
    assert not mapped.maybe_tls
    assert str(mapped) == f"connection to {WHERE} failed: {exc}"


@pytest.mark.parametrize("tls", [False, True])
def test_unknown_exception_is_lost_with_its_repr(tls: bool) -> None:
    exc = RuntimeError("boom")
    mapped = map_error(exc, WHERE, tls=tls, trace=trace(tls=tls))
    assert isinstance(mapped, ConnectionLost)
    assert not mapped.maybe_tls
    assert str(mapped) == f"call to {WHERE} failed: RuntimeError('boom')"


@pytest.mark.parametrize(
    "exc",
    [
        CuratorError(StatusCode.PERMISSION_DENIED, "no"),
        ConnectionLost("gone"),
        ConnectionLost("maybe tls", maybe_tls=True),
        ProtocolError("bad bytes"),
        TLSError("bad cert"),
        WatchClosed("closed"),
        TrionodesError("base"),
    ],
    ids=type,
)
@pytest.mark.parametrize("tls", [False, True])
def test_our_errors_pass_through(exc: TrionodesError, tls: bool) -> None:
    assert map_error(exc, WHERE, tls=tls, trace=trace(tls=tls)) is exc
    assert map_error(exc, WHERE, tls=tls, trace=None) is exc


def test_tls_errors_are_not_connection_lost() -> None:
    # Code that reconnects on ConnectionLost must not retry these forever.
    assert not issubclass(TLSError, ConnectionLost)
    # A close that only looks like TLS is a ConnectionLost, retried like one, and says so.
    maybe_tls = ConnectionLost("closed during the TLS handshake", maybe_tls=True)
    assert maybe_tls.maybe_tls
    assert not ConnectionLost("gone").maybe_tls
    with pytest.raises(AttributeError):
        maybe_tls.maybe_tls = False  # type: ignore[misc]


# Real ssl errors from the installed OpenSSL, over memory buffers: the tables must
# match what it actually reports.


def _pump(
    client: ssl.SSLObject,
    server: ssl.SSLObject | None,
    to_client: ssl.MemoryBIO,
    from_client: ssl.MemoryBIO,
    to_server: ssl.MemoryBIO,
    from_server: ssl.MemoryBIO,
) -> ssl.SSLError | None:
    """Run both handshakes, then a read by the client; the client's error, if any."""
    client_done = False
    server_done = server is None
    for _ in range(20):
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                return exc
        if server is not None and not server_done:
            try:
                server.do_handshake()
                server_done = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                server_done = True  # Its alert is in from_server.
        to_server.write(from_client.read())
        to_client.write(from_server.read())
        if client_done and server_done:
            break
    try:
        client.read(1)
    except ssl.SSLWantReadError:
        return None
    except ssl.SSLError as exc:
        return exc
    return None


def _issue(ca: trustme.CA, ctx: ssl.SSLContext, *identities: str, **kwargs: object) -> None:
    ca.issue_cert(*identities, **kwargs).configure_cert(ctx)  # type: ignore[arg-type]


def _handshake(
    *,
    hostname: str = "curator.example",
    server_ca: str = "cluster",
    expired_server: bool = False,
    client_cert: str | None = "cluster",
    require_client_cert: bool = True,
    tls13: bool = True,
) -> ssl.SSLError | None:
    cas = {"cluster": trustme.CA(), "other": trustme.CA()}
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _issue(
        cas[server_ca],
        server_ctx,
        "curator.example",
        **({"not_after": PAST} if expired_server else {}),
    )
    if require_client_cert:
        server_ctx.verify_mode = ssl.CERT_REQUIRED
        cas["cluster"].configure_trust(server_ctx)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cas["cluster"].configure_trust(client_ctx)
    if client_cert is not None:
        _issue(cas[client_cert], client_ctx, "owner")
    version = ssl.TLSVersion.TLSv1_3 if tls13 else ssl.TLSVersion.TLSv1_2
    client_ctx.minimum_version = client_ctx.maximum_version = version
    bios = [ssl.MemoryBIO() for _ in range(4)]
    to_client, from_client, to_server, from_server = bios
    client = client_ctx.wrap_bio(to_client, from_client, server_hostname=hostname)
    server = server_ctx.wrap_bio(to_server, from_server, server_side=True)
    return _pump(client, server, to_client, from_client, to_server, from_server)


def test_real_handshake_succeeds() -> None:
    # The harness itself: with everything right there is no error.
    assert _handshake() is None


@pytest.mark.parametrize(
    ("kwargs", "code", "hint"),
    [
        pytest.param({"hostname": "elsewhere.example"}, 62, VERIFY_HINTS[0][1], id="hostname"),
        pytest.param({"expired_server": True}, 10, VERIFY_HINTS[1][1], id="expired"),
        pytest.param({"server_ca": "other"}, 20, VERIFY_HINT_OTHERWISE, id="unknown-ca"),
    ],
)
def test_real_verify_failures(kwargs: dict[str, object], code: int, hint: str) -> None:
    exc = _handshake(**kwargs)  # type: ignore[arg-type]
    assert isinstance(exc, ssl.SSLCertVerificationError), exc
    assert exc.verify_code == code
    mapped = map_tls_error(exc, WHERE)
    assert type(mapped) is TLSError
    assert f"({hint})" in str(mapped)
    assert exc.verify_message in str(mapped)


@pytest.mark.parametrize(
    ("kwargs", "meaning"),
    [
        pytest.param({"client_cert": None}, "none was presented", id="no-cert-tls13"),
        pytest.param(
            {"client_cert": None, "tls13": False}, "refused the handshake", id="no-cert-tls12"
        ),
        pytest.param({"client_cert": "other"}, "not issued by the cluster CA", id="other-ca"),
    ],
)
def test_real_alerts(kwargs: dict[str, object], meaning: str) -> None:
    exc = _handshake(**kwargs)  # type: ignore[arg-type]
    assert isinstance(exc, ssl.SSLError), exc
    mapped = map_tls_error(exc, WHERE)
    assert type(mapped) is TLSError
    assert meaning in str(mapped), (exc.reason, str(mapped))


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", id="http1"),
        # An HTTP/2 server's SETTINGS frame, then GOAWAY (PROTOCOL_ERROR).
        pytest.param(
            b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
            b"\x00\x00\x08\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01",
            id="http2",
        ),
    ],
)
def test_real_plain_text_reply_is_not_tls(reply: bytes) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    to_client, from_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ctx.wrap_bio(to_client, from_client, server_hostname="curator.example")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    to_client.write(reply)
    with pytest.raises(ssl.SSLError) as info:
        client.do_handshake()
    assert info.value.reason in NOT_TLS_REASONS, (
        f"OpenSSL ({ssl.OPENSSL_VERSION}) reports a plain-text reply as "
        f"{info.value.reason}, not in NOT_TLS_REASONS"
    )
    mapped = map_tls_error(info.value, WHERE)
    assert type(mapped) is TLSError
    assert "does not seem to serve TLS" in str(mapped)


def test_real_eof_during_handshake_is_likely_tls() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    to_client, from_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ctx.wrap_bio(to_client, from_client, server_hostname="curator.example")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    to_client.write_eof()
    with pytest.raises(ssl.SSLError) as info:
        client.do_handshake()
    mapped = map_error(info.value, WHERE, tls=True, trace=None)
    assert isinstance(mapped, ConnectionLost)
    assert mapped.maybe_tls


@pytest.mark.parametrize("code", [*GOAWAY_MEANINGS, "HTTP_1_1_REQUIRED"])
def test_a_goaway_is_reported_with_its_code_and_debug_data(code: str) -> None:
    goaway = GoAway(code, b"leader moved")
    mapped = map_error(terminated(), WHERE, tls=True, trace=trace(received=True, goaway=goaway))
    assert isinstance(mapped, ConnectionLost)
    assert not mapped.maybe_tls
    assert f"GOAWAY {code} (leader moved)" in str(mapped)
    assert GOAWAY_MEANINGS.get(code, "") in str(mapped)
    assert "keepalive ping in time" not in str(mapped)


def test_too_many_pings_says_the_server_limits_pings() -> None:
    goaway = GoAway("ENHANCE_YOUR_CALM", b"too_many_pings")
    assert goaway.too_many_pings
    assert not GoAway("ENHANCE_YOUR_CALM", b"").too_many_pings
    # grpclib closes the connection itself on a GOAWAY: never a dead connection.
    mapped = explain_lost(trace(received=True, ping_unanswered=False, goaway=goaway), WHERE)
    assert mapped is not None
    assert "limits how often it accepts keepalive pings" in str(mapped)


def test_a_refusal_of_our_own_check_of_the_server_passes_through() -> None:
    refused = TLSError("not a node of this cluster")
    assert explain_lost(trace(lost_with=refused), WHERE) is refused
