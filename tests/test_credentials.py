"""trionodes.Credentials: building them, every bad file, and checking a node's certificate.

Certificates come from :mod:`trionodes.testing._pki`, shaped like a Metropolis
cluster's (Ed25519, node IDs, no IP SANs). The TLS tests run real OpenSSL handshakes:
over memory BIOs to look at the bytes the client sends, and over loopback TCP.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

import trionodes
import trionodes._credentials as credentials_module
from trionodes._credentials import Credentials, CredentialsError, _go_ed25519_to_pkcs8
from trionodes.testing._pki import CertifiedKey, ClusterPKI, NodeIdentity, go_ed25519_pem

PAST = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
FUTURE = datetime.datetime(9000, 1, 1, tzinfo=datetime.UTC)
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def pki() -> ClusterPKI:
    return ClusterPKI()


@pytest.fixture(scope="module")
def other_pki() -> ClusterPKI:
    """Another cluster: nothing it issues is valid for ``pki``."""
    return ClusterPKI()


@pytest.fixture(scope="module")
def node(pki: ClusterPKI) -> NodeIdentity:
    return pki.node()


class Files:
    """The cluster CA, the owner's certificate and its key (PKCS#8) as PEM files."""

    def __init__(self, directory: Path, pki: ClusterPKI) -> None:
        self.directory = directory
        self.ca = directory / "ca.pem"
        self.cert = directory / "owner.pem"
        self.key = directory / "owner-key.pem"
        self.ca.write_bytes(pki.ca_pem)
        pki.owner.write(self.cert, self.key)

    def write(self, name: str, data: bytes, mode: int = 0o600) -> Path:
        path = self.directory / name
        path.write_bytes(data)
        path.chmod(mode)
        return path

    def credentials(self, **override: Path) -> Credentials:
        paths = {"ca": self.ca, "cert": self.cert, "key": self.key, **override}
        return Credentials.from_pem_files(**paths)


@pytest.fixture
def files(tmp_path: Path, pki: ClusterPKI) -> Files:
    return Files(tmp_path, pki)


def leaf(pki: ClusterPKI, key: Any, **kwargs: Any) -> CertifiedKey:
    """A certificate from ``pki`` for ``key`` (clientAuth unless told otherwise)."""
    kwargs.setdefault("common_name", "client")
    kwargs.setdefault("usages", [ExtendedKeyUsageOID.CLIENT_AUTH])
    return CertifiedKey(pki.issue(key.public_key(), **kwargs), key)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


# --- Building credentials -------------------------------------------------------------


def test_no_public_constructor() -> None:
    with pytest.raises(TypeError, match=r"from_metroctl\(\).*from_pem_files"):
        Credentials()
    assert Credentials.__module__ == "trionodes"
    assert CredentialsError.__module__ == "trionodes"
    assert issubclass(CredentialsError, trionodes.TrionodesError)


def test_pkcs8_files(files: Files, pki: ClusterPKI) -> None:
    credentials = files.credentials()
    assert credentials.ca_path == files.ca
    assert credentials.cert_path == files.cert
    assert credentials.key_path == files.key
    assert repr(credentials) == (
        f"Credentials(ca={str(files.ca)!r}, cert={str(files.cert)!r}, key={str(files.key)!r})"
    )


def test_repr_shows_no_key_material(files: Files, pki: ClusterPKI) -> None:
    text = repr(files.credentials())
    key_body = b"".join(pki.owner.key_pem.splitlines()[1:-1]).decode()
    assert "PRIVATE" not in text
    assert key_body[:20] not in text


def test_paths_may_be_str(files: Files) -> None:
    credentials = Credentials.from_pem_files(
        ca=str(files.ca), cert=str(files.cert), key=str(files.key)
    )
    assert credentials.key_path == files.key


def test_ca_only(files: Files) -> None:
    credentials = Credentials.from_pem_files(ca=files.ca)
    assert credentials.cert_path is None
    assert credentials.key_path is None
    assert repr(credentials) == f"Credentials(ca={str(files.ca)!r})"


@pytest.mark.parametrize("given", ["cert", "key"])
def test_cert_and_key_go_together(files: Files, given: str) -> None:
    kwargs: dict[str, Path] = {"ca": files.ca, given: getattr(files, given)}
    with pytest.raises(CredentialsError, match=f"{given} was given without"):
        Credentials.from_pem_files(**kwargs)


def test_pem_data_instead_of_a_path(pki: ClusterPKI) -> None:
    with pytest.raises(CredentialsError, match="path to a PEM file, not the PEM data"):
        Credentials.from_pem_files(ca=pki.ca_pem.decode())


def test_pkcs1_rsa_key(files: Files, pki: ClusterPKI) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pair = leaf(pki, key)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    credentials = files.credentials(
        cert=files.write("rsa.pem", pair.cert_pem), key=files.write("rsa-key.pem", pem)
    )
    assert presented_certificate(credentials, pki) == der(pair.certificate)


def test_sec1_ec_key(files: Files, pki: ClusterPKI) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pair = leaf(pki, key)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert pem.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    credentials = files.credentials(
        cert=files.write("ec.pem", pair.cert_pem), key=files.write("ec-key.pem", pem)
    )
    assert presented_certificate(credentials, pki) == der(pair.certificate)


def test_pem_files_with_metroctl_key(files: Files, pki: ClusterPKI) -> None:
    key = files.write("go-key.pem", pki.owner_key_metroctl_pem())
    credentials = files.credentials(key=key)
    assert presented_certificate(credentials, pki) == der(pki.owner.certificate)


def test_from_metroctl_xdg_config_home(
    tmp_path: Path, pki: ClusterPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = pki.write_metroctl_dir(tmp_path / "xdg" / "metroctl")
    assert (
        (directory / "owner-key.pem")
        .read_bytes()
        .startswith(b"-----BEGIN METROPOLIS INITIAL OWNER PRIVATE KEY-----")
    )
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))
    credentials = Credentials.from_metroctl()
    assert credentials.ca_path == directory / "ca.pem"
    assert credentials.cert_path == directory / "owner.pem"
    assert credentials.key_path == directory / "owner-key.pem"
    assert presented_certificate(credentials, pki) == der(pki.owner.certificate)


@pytest.mark.parametrize("xdg", [None, "", "relative/config"])
def test_from_metroctl_home_default(
    tmp_path: Path, pki: ClusterPKI, monkeypatch: pytest.MonkeyPatch, xdg: str | None
) -> None:
    # Unset, empty and relative XDG_CONFIG_HOME all mean ~/.config (the XDG rule).
    directory = pki.write_metroctl_dir(tmp_path / ".config" / "metroctl")
    monkeypatch.setenv("HOME", str(tmp_path))
    if xdg is None:
        monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CONFIG_HOME", xdg)
    assert Credentials.from_metroctl().key_path == directory / "owner-key.pem"


def test_from_metroctl_explicit_dir(tmp_path: Path, pki: ClusterPKI) -> None:
    directory = pki.write_metroctl_dir(tmp_path / "cfg")
    assert Credentials.from_metroctl(str(directory)).ca_path == directory / "ca.pem"


def test_files_are_read_once(files: Files, pki: ClusterPKI) -> None:
    credentials = files.credentials()
    for path in (files.ca, files.cert, files.key):
        path.unlink()
    # What was checked is what is presented: the files are not read again.
    assert presented_certificate(credentials, pki) == der(pki.owner.certificate)


# --- Bad files: each error names the file ---------------------------------------------


@contextlib.contextmanager
def raises_naming(path: Path, match: str | None = None) -> Iterator[None]:
    """Expect a CredentialsError whose message (and ``path``) names ``path``."""
    with pytest.raises(CredentialsError, match=match) as info:
        yield
    assert str(path) in str(info.value)
    assert info.value.path == path


@pytest.mark.parametrize("which", ["ca", "cert", "key"])
def test_missing_file(files: Files, which: str) -> None:
    path: Path = getattr(files, which)
    path.unlink()
    with raises_naming(path, "does not exist"):
        files.credentials()


@pytest.mark.parametrize("name", ["ca.pem", "owner.pem", "owner-key.pem"])
def test_missing_metroctl_file(tmp_path: Path, pki: ClusterPKI, name: str) -> None:
    directory = pki.write_metroctl_dir(tmp_path / "metroctl")
    (directory / name).unlink()
    with raises_naming(directory / name, "does not exist.*metroctl"):
        Credentials.from_metroctl(directory)


def test_missing_metroctl_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with raises_naming(tmp_path / "metroctl", "no metroctl configuration directory"):
        Credentials.from_metroctl()


@pytest.mark.skipif(IS_ROOT, reason="root reads files whatever their mode")
@pytest.mark.parametrize("which", ["ca", "cert", "key"])
def test_unreadable_file(files: Files, which: str) -> None:
    path: Path = getattr(files, which)
    path.chmod(0)
    with raises_naming(path, "cannot be read \\(permission denied\\)"):
        files.credentials()


@pytest.mark.parametrize("which", ["ca", "cert", "key"])
def test_unreadable_file_simulated(
    files: Files, which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same path as chmod 000, reachable as root too: open() refusing.
    path: Path = getattr(files, which)
    real_open = open

    def refusing_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(credentials_module, "open", refusing_open, raising=False)
    with raises_naming(path, "cannot be read \\(permission denied\\)"):
        files.credentials()


def test_directory_instead_of_file(files: Files) -> None:
    files.cert.unlink()
    files.cert.mkdir()
    with raises_naming(files.cert, "is a directory"):
        files.credentials()


def test_key_where_certificate_expected(files: Files) -> None:
    with raises_naming(files.key, "holds a private key, not a certificate.*swapped"):
        files.credentials(cert=files.key)


def test_key_where_ca_expected(files: Files) -> None:
    with raises_naming(files.key, "holds a private key, not a certificate"):
        files.credentials(ca=files.key)


def test_certificate_where_key_expected(files: Files) -> None:
    with raises_naming(files.cert, "holds CERTIFICATE, not a private key.*swapped"):
        files.credentials(key=files.cert)


def test_leaf_where_ca_expected(files: Files, node: NodeIdentity) -> None:
    ca = files.write("node.pem", node.cert_pem)
    with raises_naming(ca, "is not a CA certificate"):
        files.credentials(ca=ca)


@pytest.mark.parametrize("which", ["ca", "cert", "key"])
@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "is empty"),
        (b"hello, this is not PEM\n", "is not a PEM file"),
        (b"\x30\x82\x01\x00" + bytes(100), "binary DER"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", None),
        (b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n", None),
    ],
)
def test_garbage(files: Files, which: str, content: bytes, match: str | None) -> None:
    path: Path = getattr(files, which)
    path.write_bytes(content)
    # Damaged blocks get a message that depends on the role (a key block in the cert
    # file is the wrong kind, in the key file it is damaged): any, as long as it names
    # the file.
    with raises_naming(path, match):
        files.credentials()


def test_damaged_certificate(files: Files) -> None:
    files.cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with raises_naming(files.cert, "not a valid certificate.*damaged"):
        files.credentials()


def test_damaged_key(files: Files) -> None:
    files.key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with raises_naming(files.key, "could not be read as a private key"):
        files.credentials()


def test_mismatched_key(files: Files) -> None:
    # Another owner's key, of the same kind (Ed25519), in the same format.
    key = files.write("other-key.pem", ClusterPKI().owner.key_pem)
    with raises_naming(key, "does not belong to the certificate"):
        files.credentials(key=key)


def test_certificate_from_another_cluster(files: Files, other_pki: ClusterPKI) -> None:
    cert = files.write("foreign.pem", other_pki.owner.cert_pem)
    key = files.write("foreign-key.pem", other_pki.owner.key_pem)
    with raises_naming(cert, "not issued by the cluster CA.*different clusters"):
        files.credentials(cert=cert, key=key)


def test_more_than_one_certificate(files: Files, pki: ClusterPKI) -> None:
    # A chain file (client + CA) would send two certificates: refused up front.
    cert = files.write("chain.pem", pki.owner.cert_pem + pki.ca_pem)
    with raises_naming(cert, "holds 2 certificates.*exactly one"):
        files.credentials(cert=cert)


def test_expired_client_certificate(files: Files, pki: ClusterPKI) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pair = leaf(pki, key, not_before=PAST - datetime.timedelta(days=1), not_after=PAST)
    cert = files.write("old.pem", pair.cert_pem)
    with raises_naming(cert, "expired at 2020-01-01"):
        files.credentials(cert=cert, key=files.write("old-key.pem", pair.key_pem))


def test_encrypted_key(files: Files, pki: ClusterPKI) -> None:
    pem = pki.owner.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    key = files.write("encrypted.pem", pem)
    with raises_naming(key, "is encrypted"):
        files.credentials(key=key)


def test_two_keys_in_one_file(files: Files, pki: ClusterPKI) -> None:
    key = files.write("two.pem", pki.owner.key_pem * 2)
    with raises_naming(key, "holds 2 private keys"):
        files.credentials(key=key)


def test_key_file_may_also_hold_the_certificate(files: Files, pki: ClusterPKI) -> None:
    key = files.write("both.pem", pki.owner.cert_pem + pki.owner.key_pem)
    assert files.credentials(key=key).key_path == key


def go_key_pem(raw: bytes) -> bytes:
    import base64

    body = base64.encodebytes(raw).decode()
    label = "METROPOLIS INITIAL OWNER PRIVATE KEY"
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n".encode()


def test_metroctl_key_of_wrong_length(files: Files) -> None:
    key = files.write("short.pem", go_key_pem(bytes(32)))
    with raises_naming(key, "must hold 64 bytes.*holds 32"):
        files.credentials(key=key)


def test_metroctl_key_with_wrong_public_half(files: Files, pki: ClusterPKI) -> None:
    raw = go_key_raw(pki)
    key = files.write("bad.pem", go_key_pem(raw[:32] + bytes(32)))
    with raises_naming(key, "public half does not match its seed"):
        files.credentials(key=key)


def go_key_raw(pki: ClusterPKI) -> bytes:
    import base64

    lines = pki.owner_key_metroctl_pem().splitlines()
    return base64.b64decode(b"".join(lines[1:-1]))


@settings(max_examples=50, deadline=None)
@given(content=st.binary(max_size=300))
def test_any_bytes_as_a_file_give_credentials_error(content: bytes) -> None:
    pki = _SHARED_PKI
    with tempfile.TemporaryDirectory() as directory:
        files = Files(Path(directory), pki)
        for path in (files.ca, files.cert, files.key):
            original = path.read_bytes()
            path.write_bytes(content)
            with pytest.raises(CredentialsError) as info:
                files.credentials()
            assert str(path) in str(info.value)
            path.write_bytes(original)


_SHARED_PKI = ClusterPKI()


# --- The permissions warning -----------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_warns_about_key_readable_by_others(
    files: Files, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    files.key.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="trionodes"):
        files.credentials()
    records = [record for record in caplog.records if record.name == "trionodes"]
    assert len(records) == 1
    message = records[0].getMessage()
    assert str(files.key) in message
    assert f"{mode:04o}" in message
    assert "chmod 600" in message


def test_warns_about_metroctl_key_readable_by_others(
    tmp_path: Path, pki: ClusterPKI, caplog: pytest.LogCaptureFixture
) -> None:
    directory = pki.write_metroctl_dir(tmp_path)
    (directory / "owner-key.pem").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="trionodes"):
        Credentials.from_metroctl(directory)
    assert [record.levelno for record in caplog.records] == [logging.WARNING]


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_no_warning_for_private_key(
    files: Files, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    files.key.chmod(mode)
    with caplog.at_level(logging.DEBUG, logger="trionodes"):
        files.credentials()
    assert caplog.records == []


# --- The raw Go key conversion -----------------------------------------------------------


@given(seed=st.binary(min_size=32, max_size=32))
def test_go_key_conversion_round_trips(seed: bytes) -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    public = key.public_key().public_bytes_raw()
    pkcs8 = _go_ed25519_to_pkcs8(seed + public)
    loaded = serialization.load_der_private_key(pkcs8, password=None)
    assert isinstance(loaded, ed25519.Ed25519PrivateKey)
    assert loaded.public_key().public_bytes_raw() == public
    # And it is what cryptography itself writes for that key.
    assert pkcs8 == key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@given(seed=st.binary(min_size=32, max_size=32), public=st.binary(min_size=32, max_size=32))
def test_go_key_conversion_refuses_a_foreign_public_half(seed: bytes, public: bytes) -> None:
    real = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    if public == real:
        return
    with pytest.raises(ValueError, match="does not match"):
        _go_ed25519_to_pkcs8(seed + public)


@given(seed=st.binary(min_size=32, max_size=32))
def test_go_pem_loads_as_the_same_key(seed: bytes) -> None:
    # What _pki writes for metroctl's directory is what _credentials reads back.
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    pem = go_ed25519_pem(key)
    raw = go_key_raw_from_pem(pem)
    loaded = serialization.load_der_private_key(_go_ed25519_to_pkcs8(raw), password=None)
    assert isinstance(loaded, ed25519.Ed25519PrivateKey)
    assert loaded.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()


def go_key_raw_from_pem(pem: bytes) -> bytes:
    import base64

    return base64.b64decode(b"".join(pem.splitlines()[1:-1]))


# --- Checking the server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def credentials(pki: ClusterPKI, tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    directory = pki.write_metroctl_dir(tmp_path_factory.mktemp("metroctl"))
    return Credentials.from_metroctl(directory)


def test_verify_accepts_the_expected_node(credentials: Credentials, node: NodeIdentity) -> None:
    credentials._verify_server(der(node.certificate), node.node_id)
    credentials._verify_server(der(node.certificate), node.node_id.upper())
    credentials._verify_server(der(node.certificate), None)


def test_verify_with_ca_only(files: Files, node: NodeIdentity) -> None:
    Credentials.from_pem_files(ca=files.ca)._verify_server(der(node.certificate), node.node_id)


def test_verify_refuses_another_node(
    credentials: Credentials, pki: ClusterPKI, node: NodeIdentity
) -> None:
    other = pki.node()
    with pytest.raises(trionodes.TLSError, match=f"names {other.node_id}, not node"):
        credentials._verify_server(der(other.certificate), node.node_id)


def test_verify_refuses_another_cluster(
    credentials: Credentials, other_pki: ClusterPKI, node: NodeIdentity
) -> None:
    # Same key, so the same node ID: only the issuer differs.
    impostor = other_pki.node(node.private_key)  # type: ignore[arg-type]
    assert impostor.node_id == node.node_id
    for node_id in (node.node_id, None):
        with pytest.raises(trionodes.TLSError, match="not issued by the cluster CA"):
            credentials._verify_server(der(impostor.certificate), node_id)


def test_verify_refuses_a_forged_signature(credentials: Credentials, pki: ClusterPKI) -> None:
    # Names the cluster CA as issuer but is signed by another key of the same name.
    forger = ClusterPKI()
    forged = forger.node()
    assert forged.certificate.issuer == pki.ca.certificate.subject
    with pytest.raises(trionodes.TLSError, match="not issued by the cluster CA"):
        credentials._verify_server(der(forged.certificate), forged.node_id)


def test_verify_refuses_a_client_certificate(credentials: Credentials, pki: ClusterPKI) -> None:
    with pytest.raises(trionodes.TLSError, match=r"not a server certificate.*clientAuth"):
        credentials._verify_server(der(pki.owner.certificate), None)


def test_verify_refuses_no_extended_key_usage(credentials: Credentials, pki: ClusterPKI) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    cert = pki.issue(key.public_key(), common_name="metropolis-x", usages=None)
    with pytest.raises(trionodes.TLSError, match="extended key usage is absent"):
        credentials._verify_server(der(cert), "metropolis-x")


@pytest.mark.parametrize(
    ("not_before", "not_after", "match"),
    [
        (PAST - datetime.timedelta(days=1), PAST, "expired at 2020-01-01"),
        (FUTURE, FUTURE + datetime.timedelta(days=1), "not valid before 9000-01-01"),
    ],
)
def test_verify_refuses_outside_validity(
    credentials: Credentials,
    pki: ClusterPKI,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    match: str,
) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    cert = pki.issue(
        key.public_key(),
        common_name="metropolis-x",
        dns_names=["metropolis-x"],
        not_before=not_before,
        not_after=not_after,
    )
    with pytest.raises(trionodes.TLSError, match=match):
        credentials._verify_server(der(cert), "metropolis-x")


def test_verify_never_matches_an_ip_address(credentials: Credentials, pki: ClusterPKI) -> None:
    import ipaddress

    key = ed25519.Ed25519PrivateKey.generate()
    cert = pki.issue(key.public_key(), common_name="metropolis-x")
    with_ip = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(pki.ca.private_key, None)
    )
    credentials._verify_server(der(with_ip), "metropolis-x")
    with pytest.raises(trionodes.TLSError, match=re.escape("not node '127.0.0.1'")):
        credentials._verify_server(der(with_ip), "127.0.0.1")


def test_verify_refuses_garbage(credentials: Credentials) -> None:
    with pytest.raises(trionodes.TLSError, match="could not be parsed"):
        credentials._verify_server(b"\x30\x03\x02\x01\x00", None)


def test_verify_accepts_other_ca_key_types(tmp_path: Path) -> None:
    # Metropolis uses Ed25519; a CA with an ECDSA key must work the same.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ECDSA CA")])
    ca_cert = build(name, name, ca_key.public_key(), ca_key, ca=True)
    node_key = ec.generate_private_key(ec.SECP256R1())
    node_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "n")])
    node_cert = build(node_name, name, node_key.public_key(), ca_key, ca=False)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    credentials = Credentials.from_pem_files(ca=ca)
    credentials._verify_server(der(node_cert), "n")
    with pytest.raises(trionodes.TLSError, match="not node 'm'"):
        credentials._verify_server(der(node_cert), "m")


def build(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(PAST)
        .not_valid_after(FUTURE)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


# --- The client context and what it sends -----------------------------------------------


def test_client_context_settings(credentials: Credentials) -> None:
    ctx = credentials._client_context()
    assert ctx.verify_mode == ssl.CERT_NONE
    assert ctx.check_hostname is False
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    # Nothing trusted: a trusted CA is what makes OpenSSL send it along.
    assert ctx.cert_store_stats()["x509_ca"] == 0
    assert ctx.get_ca_certs() == []


def test_client_context_leaves_no_files(
    credentials: Credentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    created: list[str] = []
    real_open = os.open

    def recording_open(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        if flags & os.O_CREAT:  # not the directory opens of the cleanup
            created.append(str(path))
            assert mode == 0o600
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    credentials._client_context()
    assert len(created) == 2
    assert all(path.startswith(str(tmp_path)) for path in created)
    assert list(tmp_path.iterdir()) == []


def memory_handshake(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, server_hostname: str
) -> tuple[ssl.SSLObject, ssl.SSLObject, bytes]:
    """Run a handshake over memory BIOs; return both ends and every byte the client sent."""
    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(client_in, client_out, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(server_in, server_out, server_side=True)
    sent = bytearray()
    done = {"client": False, "server": False}

    def step(end: ssl.SSLObject, name: str) -> None:
        if not done[name]:
            try:
                end.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass

    for _ in range(10):
        step(client, "client")
        data = client_out.read()
        sent += data
        server_in.write(data)
        step(server, "server")
        client_in.write(server_out.read())
        if all(done.values()):
            return client, server, bytes(sent)
    raise AssertionError("the handshake did not finish")


def client_certificates_on_the_wire(sent: bytes) -> list[bytes]:
    """The certificates in the client's TLS 1.2 Certificate message, read from its bytes.

    Before ChangeCipherSpec a TLS 1.2 client sends its handshake in the clear, so this
    measures what actually went out, with no help from the ssl module.
    """
    handshake = bytearray()
    pos = 0
    while pos + 5 <= len(sent):
        record_type = sent[pos]
        length = int.from_bytes(sent[pos + 3 : pos + 5], "big")
        body = sent[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if record_type == 20:  # ChangeCipherSpec: the rest is encrypted
            break
        if record_type == 22:
            handshake += body
    pos = 0
    while pos + 4 <= len(handshake):
        message_type = handshake[pos]
        length = int.from_bytes(handshake[pos + 1 : pos + 4], "big")
        message = handshake[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if message_type == 11:  # Certificate
            certificates = []
            total = int.from_bytes(message[0:3], "big")
            i = 3
            while i < 3 + total:
                size = int.from_bytes(message[i : i + 3], "big")
                certificates.append(bytes(message[i + 3 : i + 3 + size]))
                i += 3 + size
            return certificates
    raise AssertionError("the client sent no Certificate message")


def naive_context(files: Files) -> ssl.SSLContext:
    """The obvious context: trusts the CA and presents the client certificate."""
    ctx = ssl.create_default_context(cafile=files.ca)
    ctx.load_cert_chain(files.cert, files.key)
    ctx.set_alpn_protocols(["h2"])
    ctx.check_hostname = False  # node certificates name no address
    return ctx


@pytest.fixture
def tls12_server(pki: ClusterPKI, node: NodeIdentity) -> ssl.SSLContext:
    ctx = pki.server_context(node)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def test_exactly_one_certificate_goes_out(
    files: Files, pki: ClusterPKI, node: NodeIdentity, tls12_server: ssl.SSLContext
) -> None:
    _, server, sent = memory_handshake(
        files.credentials()._client_context(), tls12_server, node.node_id
    )
    assert client_certificates_on_the_wire(sent) == [der(pki.owner.certificate)]
    assert server.getpeercert(binary_form=True) == der(pki.owner.certificate)


def test_naive_context_sends_two_certificates(
    files: Files, pki: ClusterPKI, node: NodeIdentity, tls12_server: ssl.SSLContext
) -> None:
    # The trap: with the CA in its trust store, OpenSSL completes the client's chain
    # from it. A Curator refuses Watch from such a client.
    _, _, sent = memory_handshake(naive_context(files), tls12_server, node.node_id)
    assert client_certificates_on_the_wire(sent) == [
        der(pki.owner.certificate),
        der(pki.ca.certificate),
    ]


def test_ca_only_sends_no_certificate(
    files: Files, node: NodeIdentity, tls12_server: ssl.SSLContext
) -> None:
    credentials = Credentials.from_pem_files(ca=files.ca)
    _, server, sent = memory_handshake(credentials._client_context(), tls12_server, node.node_id)
    assert client_certificates_on_the_wire(sent) == []
    assert server.getpeercert() is None


@pytest.mark.skipif(sys.version_info < (3, 13), reason="get_unverified_chain is new in 3.13")
def test_one_certificate_seen_by_the_server_tls13(
    files: Files, pki: ClusterPKI, node: NodeIdentity
) -> None:
    # TLS 1.3 encrypts the Certificate message; the server's view of the chain says
    # the same as the TLS 1.2 bytes above.
    for ctx, expected in ((files.credentials()._client_context(), 1), (naive_context(files), 2)):
        client, server, _ = memory_handshake(ctx, pki.server_context(node), node.node_id)
        assert client.version() == "TLSv1.3"
        chain = server.get_unverified_chain()  # type: ignore[attr-defined,unused-ignore]
        assert len(chain) == expected


def test_pki_server_refuses_a_foreign_client_certificate_at_the_handshake(
    files: Files, other_pki: ClusterPKI
) -> None:
    # What _pki's server_context cannot copy from a Curator (see its docstring): with
    # Python's ssl, a client certificate that is sent is also verified.
    foreign = other_pki.node()
    with pytest.raises(ssl.SSLError):
        memory_handshake(
            files.credentials()._client_context(),
            other_pki.server_context(foreign),
            foreign.node_id,
        )


def presented_certificate(credentials: Credentials, pki: ClusterPKI) -> bytes | None:
    """The client certificate a server of ``pki`` receives from ``credentials``."""
    node = pki.node()
    _, server, _ = memory_handshake(
        credentials._client_context(), pki.server_context(node), node.node_id
    )
    return server.getpeercert(binary_form=True)


# --- A real handshake over loopback --------------------------------------------------------


async def loopback_handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str
) -> tuple[bytes, bytes | None, str | None]:
    """Handshake over 127.0.0.1 TCP; the server's DER, the client's DER, the ALPN."""
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    seen: dict[str, bytes | None] = {}
    async with listener, trio.open_nursery() as nursery:

        async def serve() -> None:
            async with trio.SSLStream(await listener.accept(), server_ctx, server_side=True) as end:
                await end.do_handshake()
                seen["client"] = end.getpeercert(binary_form=True)

        nursery.start_soon(serve)
        raw = await trio.open_tcp_stream("127.0.0.1", port)
        async with trio.SSLStream(raw, client_ctx, server_hostname=server_hostname) as client:
            await client.do_handshake()
            server_der = client.getpeercert(binary_form=True)
            alpn = client.selected_alpn_protocol()
    assert server_der is not None
    return server_der, seen["client"], alpn


async def test_loopback_handshake_then_verify(
    credentials: Credentials, pki: ClusterPKI, node: NodeIdentity
) -> None:
    with trio.fail_after(10):
        server_der, client_der, alpn = await loopback_handshake(
            pki.server_context(node), credentials._client_context(), node.node_id
        )
    credentials._verify_server(server_der, node.node_id)
    assert client_der == der(pki.owner.certificate)
    assert alpn == "h2"


async def test_loopback_handshake_with_another_clusters_node(
    credentials: Credentials, pki: ClusterPKI, other_pki: ClusterPKI
) -> None:
    # The handshake itself succeeds (the client context trusts nothing); the check
    # afterwards is what refuses the server, before any request would go out.
    foreign = other_pki.node()
    with trio.fail_after(10):
        server_der, _, _ = await loopback_handshake(
            # Trusting our CA too: else it refuses our client certificate first.
            other_pki.server_context(foreign, also_trust=[pki.ca_pem]),
            credentials._client_context(),
            foreign.node_id,
        )
    with pytest.raises(trionodes.TLSError, match="not issued by the cluster CA"):
        credentials._verify_server(server_der, foreign.node_id)


# --- Cost --------------------------------------------------------------------------------


def test_cryptography_is_imported_lazily() -> None:
    code = (
        "import sys, trionodes._credentials; "
        "assert 'cryptography' not in sys.modules, 'imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
