"""Mutual TLS against the fake Curator: contexts, failures and their errors, refusals.

Certificates are made at test time with trustme and written to PEM files. Every
failure must come out as a typed error within seconds, never hang.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import socket
import ssl
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from cryptography.hazmat.primitives import serialization

import trionodes
from trionodes import StatusCode
from trionodes.testing import FakeCurator, make_node, open_fake_curator, server_ssl_context

# Far longer than any of these failures takes (a few milliseconds), far shorter than
# any hang (asyncio's TLS handshake timeout is 60 s).
TIMEOUT = 10
PAST = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)


@dataclasses.dataclass
class Pair:
    cert: Path
    key: Path


@dataclasses.dataclass
class PKI:
    """A cluster CA and certificates issued by it, as PEM files."""

    directory: Path
    ca: trustme.CA
    ca_pem: Path
    server: Pair
    owner: Pair

    def issue(
        self, name: str, *identities: str, ca: trustme.CA | None = None, **kwargs: Any
    ) -> Pair:
        leaf = (ca or self.ca).issue_cert(*identities, **kwargs)
        pair = Pair(self.directory / f"{name}.pem", self.directory / f"{name}-key.pem")
        leaf.private_key_pem.write_to_path(str(pair.key))
        for i, blob in enumerate(leaf.cert_chain_pems):
            blob.write_to_path(str(pair.cert), append=i > 0)
        return pair

    def client(self, pair: Pair | None = None, **kwargs: Any) -> ssl.SSLContext:
        pair = pair or self.owner
        return trionodes.client_ssl_context(self.ca_pem, pair.cert, pair.key, **kwargs)

    def without_client_cert(self) -> ssl.SSLContext:
        """A client context that trusts the cluster CA but has no certificate."""
        ctx = ssl.create_default_context(cafile=str(self.ca_pem))
        ctx.set_alpn_protocols(["h2"])
        return ctx


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    ca = trustme.CA()
    ca_pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    pki = PKI(tmp_path, ca, ca_pem, Pair(tmp_path, tmp_path), Pair(tmp_path, tmp_path))
    pki.server = pki.issue("server", "127.0.0.1")
    pki.owner = pki.issue("owner", common_name="owner")
    return pki


def common_name(cert: Mapping[str, Any]) -> str:
    subject = dict(rdn[0] for rdn in cert["subject"])
    name: str = subject["commonName"]
    return name


def version(ctx: ssl.SSLContext, tls: str) -> ssl.SSLContext:
    """``ctx``, limited to TLS 1.2 or 1.3."""
    if tls == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


@contextlib.asynccontextmanager
async def open_tls_fake(pki: PKI, *, client_ca: bool = True) -> AsyncIterator[FakeCurator]:
    ctx = server_ssl_context(
        pki.server.cert, pki.server.key, client_ca=pki.ca_pem if client_ca else None
    )
    async with open_fake_curator(ssl=ctx) as fake:
        fake.put(make_node(1), make_node(2))
        yield fake


async def first_batch(port: int, ctx: ssl.SSLContext | None, **kwargs: Any) -> trionodes.NodeBatch:
    with trio.fail_after(TIMEOUT):
        async with (
            trionodes.open_curator("127.0.0.1", port, ssl=ctx, **kwargs) as curator,
            trionodes.open_node_changes(curator) as changes,
        ):
            return await changes.receive()


# Quick retries: the ambiguous failures are tried a few times before giving up.
FAST_RETRY = trionodes.RetryPolicy(initial_delay=0.01, max_delay=0.01)


async def watch_error(port: int, ctx: ssl.SSLContext | None) -> trionodes.TrionodesError:
    """The error a watch on 127.0.0.1:``port`` ends with (it does end: none is retried
    forever)."""
    with trio.fail_after(TIMEOUT):
        async with trionodes.open_curator("127.0.0.1", port, ssl=ctx) as curator:
            with pytest.raises(trionodes.TrionodesError) as raised:
                await trionodes.watch_nodes(curator, trionodes.SimpleFollower(), retry=FAST_RETRY)
    return raised.value


def gave_up(error: trionodes.TrionodesError, expected: str) -> None:
    """Check that ``error`` gave up on a failure seen once per attempt, ``expected``."""
    assert type(error) is trionodes.TLSError
    attempts = FAST_RETRY.tls_closures
    assert str(error) == f"{expected} ({attempts} times in a row)"
    assert type(error.__cause__) is not trionodes.TLSError
    assert isinstance(error.__cause__, trionodes.ConnectionLost)


# Contexts.


def test_client_context_settings(pki: PKI) -> None:
    ctx = pki.client()
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode is ssl.CERT_REQUIRED
    assert ctx.check_hostname
    # Only the cluster CA is trusted, not the system's.
    assert len(ctx.get_ca_certs()) == 1
    assert not pki.client(check_hostname=False).check_hostname


def test_server_context_settings(pki: PKI) -> None:
    assert server_ssl_context(pki.server.cert, pki.server.key).verify_mode is ssl.CERT_NONE
    ctx = server_ssl_context(pki.server.cert, pki.server.key, client_ca=pki.ca_pem)
    assert ctx.verify_mode is ssl.CERT_REQUIRED
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2


def test_pem_bytes_are_accepted_and_temporary_files_removed(
    pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    ctx = trionodes.client_ssl_context(
        pki.ca_pem.read_bytes(), pki.owner.cert.read_bytes(), pki.owner.key.read_bytes()
    )
    assert len(ctx.get_ca_certs()) == 1
    assert list(scratch.iterdir()) == []


def test_str_holding_pem_is_refused_clearly(pki: PKI) -> None:
    with pytest.raises(ValueError, match="as bytes"):
        trionodes.client_ssl_context(pki.ca_pem.read_text(), pki.owner.cert, pki.owner.key)


def test_encrypted_key_needs_its_password(pki: PKI) -> None:
    key = serialization.load_pem_private_key(pki.owner.key.read_bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"sesame"),
    )
    # Never OpenSSL's prompt on the terminal.
    with pytest.raises(ValueError, match="key_password"):
        trionodes.client_ssl_context(pki.ca_pem, pki.owner.cert, encrypted)
    trionodes.client_ssl_context(pki.ca_pem, pki.owner.cert, encrypted, key_password="sesame")


def test_key_of_another_certificate_is_refused(pki: PKI) -> None:
    other = pki.issue("other", common_name="other")
    with pytest.raises(ssl.SSLError):
        trionodes.client_ssl_context(pki.ca_pem, pki.owner.cert, other.key)


async def test_server_hostname_needs_ssl() -> None:
    with pytest.raises(ValueError, match="server_hostname"):
        async with trionodes.open_curator("127.0.0.1", 1, server_hostname="curator"):
            pass  # pragma: no cover


# Success.


async def test_mutual_tls_connects_and_syncs(pki: PKI) -> None:
    seen: list[str] = []

    def authorize(cert: Mapping[str, Any] | None) -> trionodes.CuratorError | None:
        assert cert is not None
        seen.append(common_name(cert))
        return None

    async with open_tls_fake(pki) as fake:
        fake.authorize = authorize
        batch = await first_batch(fake.port, pki.client())
    assert batch.initial
    assert [node.id for node in batch.new] == sorted(fake.nodes)
    # The fake saw (and verified) the client's certificate.
    assert seen == ["owner"]


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
async def test_both_tls_versions_work_and_negotiate_h2(pki: PKI, tls: str) -> None:
    async with open_tls_fake(pki) as fake:
        batch = await first_batch(fake.port, version(pki.client(), tls))
        assert len(batch.new) == 2
        # ALPN: both contexts agree on h2.
        with trio.fail_after(TIMEOUT):
            tcp = await trio.open_tcp_stream("127.0.0.1", fake.port)
            async with trio.SSLStream(
                tcp, version(pki.client(), tls), server_hostname="127.0.0.1"
            ) as stream:
                await stream.do_handshake()
                assert stream.selected_alpn_protocol() == "h2"
                assert stream.version() == f"TLSv{tls}"


async def test_pem_bytes_connect(pki: PKI) -> None:
    ctx = trionodes.client_ssl_context(
        pki.ca_pem.read_bytes(), pki.owner.cert.read_bytes(), pki.owner.key.read_bytes()
    )
    async with open_tls_fake(pki) as fake:
        assert len((await first_batch(fake.port, ctx)).new) == 2


# The Curator's certificate.


async def test_wrong_ca_is_a_tls_error(pki: PKI) -> None:
    other_ca = trustme.CA()
    other_pem = pki.directory / "other-ca.pem"
    other_ca.cert_pem.write_to_path(str(other_pem))
    ctx = trionodes.client_ssl_context(other_pem, pki.owner.cert, pki.owner.key)
    async with open_tls_fake(pki) as fake:
        error = await watch_error(fake.port, ctx)
    assert type(error) is trionodes.TLSError
    assert not isinstance(error, trionodes.ConnectionLost)  # not to be retried
    assert str(error) == (
        f"TLS handshake with 127.0.0.1:{fake.port} failed: the Curator's certificate "
        "could not be verified: self-signed certificate in certificate chain "
        "(is `ca` the cluster CA?)"
    )
    assert isinstance(error.__cause__, ssl.SSLCertVerificationError)


async def test_expired_curator_certificate_is_a_tls_error(pki: PKI) -> None:
    pki.server = pki.issue("server", "127.0.0.1", not_before=PAST, not_after=PAST)
    async with open_tls_fake(pki) as fake:
        error = await watch_error(fake.port, pki.client())
    assert type(error) is trionodes.TLSError
    assert "could not be verified: certificate has expired (check the clocks" in str(error)


async def test_host_name_mismatch_and_its_two_escapes(pki: PKI) -> None:
    # A Curator certificate that names a host, not the address connected to.
    pki.server = pki.issue("server", "curator.cluster.internal")
    async with open_tls_fake(pki) as fake:
        error = await watch_error(fake.port, pki.client())
        assert type(error) is trionodes.TLSError
        assert "IP address mismatch, certificate is not valid for '127.0.0.1'" in str(error)
        assert "server_hostname=" in str(error)
        assert "check_hostname=False" in str(error)

        named = await first_batch(
            fake.port, pki.client(), server_hostname="curator.cluster.internal"
        )
        assert len(named.new) == 2
        unchecked = await first_batch(fake.port, pki.client(check_hostname=False))
        assert len(unchecked.new) == 2
        # Without the host name check, the CA is still checked.
        wrong = pki.directory / "wrong-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(wrong))
        ctx = trionodes.client_ssl_context(
            wrong, pki.owner.cert, pki.owner.key, check_hostname=False
        )
        error = await watch_error(fake.port, ctx)
        assert type(error) is trionodes.TLSError
        assert "could not be verified" in str(error)


# The client's certificate, refused by the fake (an asyncio server: it closes the
# connection without a TLS alert, so the client cannot know for sure why).

CLOSED_DURING = (
    "connection to 127.0.0.1:{port} was closed during the TLS handshake: the Curator may "
    "have rejected the client certificate (missing, expired or not issued by the cluster "
    "CA), or may not serve TLS"
)
CLOSED_AFTER = (
    "connection to 127.0.0.1:{port} was closed right after the TLS handshake, before the "
    "Curator sent anything: the Curator may have rejected the client certificate "
    "(missing, expired or not issued by the cluster CA)"
)


def client_without(pki: PKI, problem: str) -> ssl.SSLContext:
    if problem == "missing":
        return pki.without_client_cert()
    if problem == "expired":
        return pki.client(pki.issue("expired", common_name="owner", not_after=PAST))
    assert problem == "foreign"
    return pki.client(pki.issue("foreign", ca=trustme.CA(), common_name="owner"))


@pytest.mark.parametrize("problem", ["missing", "expired", "foreign"])
@pytest.mark.parametrize("tls", ["1.2", "1.3"])
async def test_client_certificate_refused_by_the_fake(pki: PKI, problem: str, tls: str) -> None:
    ctx = version(client_without(pki, problem), tls)
    async with open_tls_fake(pki) as fake:
        error = await watch_error(fake.port, ctx)
        assert fake.streams_opened == 0
    # TLS 1.2 checks the client's certificate within the handshake; TLS 1.3 after the
    # client's side of it has completed. Without an alert it could also be a network
    # fault, so it is tried again, but not forever.
    expected = CLOSED_DURING if tls == "1.2" else CLOSED_AFTER
    gave_up(error, expected.format(port=fake.port))


# The client's certificate, refused by a server that says why with a TLS alert, as
# Go's crypto/tls (a real Curator) does.


@contextlib.contextmanager
def alerting_tls_server(ctx: ssl.SSLContext) -> Iterator[int]:
    """A server on 127.0.0.1 that only does TLS handshakes, sending an alert on failure.

    Yields its port. Runs on a thread with blocking sockets: OpenSSL then writes the
    alert to the socket itself (asyncio's server drops it).
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(TIMEOUT)
            with ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False) as tls:
                try:
                    tls.do_handshake()
                except (ssl.SSLError, OSError):
                    # The alert has gone out. Close once the client has read it:
                    # closing with unread data would reset the connection, and the
                    # reset could overtake the alert.
                    with contextlib.suppress(OSError):
                        tls.shutdown(socket.SHUT_WR)
                        while tls.recv(65536):
                            pass

    thread = threading.Thread(target=serve, daemon=True)
    with listener:
        thread.start()
        try:
            yield listener.getsockname()[1]
        finally:
            stop.set()
            thread.join(TIMEOUT)


REJECTED = "TLS handshake with 127.0.0.1:{port} failed: the Curator rejected the client certificate"


@pytest.mark.parametrize(
    ("problem", "tls", "expected"),
    [
        ("missing", "1.3", f"{REJECTED}: none was presented (TLSV13_ALERT_CERTIFICATE_REQUIRED)"),
        (
            "missing",
            "1.2",
            "TLS handshake with 127.0.0.1:{port} failed: the Curator refused the handshake, "
            "perhaps for want of a client certificate (SSLV3_ALERT_HANDSHAKE_FAILURE)",
        ),
        ("expired", "1.3", f"{REJECTED}: it has expired (SSLV3_ALERT_CERTIFICATE_EXPIRED)"),
        ("expired", "1.2", f"{REJECTED}: it has expired (SSLV3_ALERT_CERTIFICATE_EXPIRED)"),
        (
            "foreign",
            "1.3",
            f"{REJECTED}: it was not issued by the cluster CA (TLSV1_ALERT_UNKNOWN_CA)",
        ),
        (
            "foreign",
            "1.2",
            f"{REJECTED}: it was not issued by the cluster CA (TLSV1_ALERT_UNKNOWN_CA)",
        ),
    ],
)
async def test_client_certificate_refused_with_an_alert_is_a_tls_error(
    pki: PKI, problem: str, tls: str, expected: str
) -> None:
    server_ctx = server_ssl_context(pki.server.cert, pki.server.key, client_ca=pki.ca_pem)
    with alerting_tls_server(server_ctx) as port:
        error = await watch_error(port, version(client_without(pki, problem), tls))
    assert type(error) is trionodes.TLSError
    assert str(error) == expected.format(port=port)
    # Under TLS 1.3 the alert arrives after the handshake, and grpclib reports only a
    # lost connection: the alert is kept in the chain all the same.
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__
    assert cause is not None


# TLS on one side only.


async def test_plain_text_against_tls(pki: PKI) -> None:
    async with open_tls_fake(pki) as fake:
        error = await watch_error(fake.port, None)
    gave_up(
        error,
        f"connection to 127.0.0.1:{fake.port} was closed before the Curator sent anything: "
        "if it serves TLS, pass ssl=trionodes.client_ssl_context(...) to open_curator",
    )


async def test_tls_against_plain_text(pki: PKI) -> None:
    async with open_fake_curator() as fake:
        error = await watch_error(fake.port, pki.client())
    assert type(error) is trionodes.TLSError
    assert str(error) == (
        f"TLS handshake with 127.0.0.1:{fake.port} failed: the Curator does not seem to "
        "serve TLS there (WRONG_VERSION_NUMBER)"
    )


# Refusals by the Curator's authorization: gRPC statuses, not TLS failures.


async def test_permission_denied_by_policy(pki: PKI) -> None:
    def owners_only(cert: Mapping[str, Any] | None) -> trionodes.CuratorError | None:
        if cert is None or common_name(cert) != "owner":
            return trionodes.CuratorError(StatusCode.PERMISSION_DENIED, "not an owner")
        return None

    reader = pki.issue("reader", common_name="reader")
    async with open_tls_fake(pki) as fake:
        fake.authorize = owners_only
        error = await watch_error(fake.port, pki.client(reader))
        assert isinstance(error, trionodes.CuratorError)
        assert error.status is StatusCode.PERMISSION_DENIED
        assert error.details == "not an owner"
        assert str(error) == "Curator answered PERMISSION_DENIED: not an owner"
        # The owner is served, on the same fake.
        assert len((await first_batch(fake.port, pki.client())).new) == 2
        assert (fake.streams_refused, fake.streams_opened) == (1, 1)


async def test_unauthenticated_without_a_client_certificate(pki: PKI) -> None:
    def authenticated(cert: Mapping[str, Any] | None) -> trionodes.CuratorError | None:
        if cert is None:
            return trionodes.CuratorError(StatusCode.UNAUTHENTICATED, "no client certificate")
        return None

    # A TLS server that does not ask for client certificates: the call gets through
    # the handshake, and is refused by the Curator's check.
    async with open_tls_fake(pki, client_ca=False) as fake:
        fake.authorize = authenticated
        error = await watch_error(fake.port, pki.without_client_cert())
    assert isinstance(error, trionodes.CuratorError)
    assert error.status is StatusCode.UNAUTHENTICATED
    assert error.details == "no client certificate"


async def test_refuse_every_call(pki: PKI) -> None:
    async with open_tls_fake(pki) as fake:
        fake.authorize = lambda cert: trionodes.CuratorError(StatusCode.PERMISSION_DENIED)
        with pytest.raises(trionodes.CuratorError) as raised:
            await first_batch(fake.port, pki.client())
        assert raised.value.status is StatusCode.PERMISSION_DENIED
        fake.authorize = None
        assert len((await first_batch(fake.port, pki.client())).new) == 2
