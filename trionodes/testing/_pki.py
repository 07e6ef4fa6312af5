"""A test PKI shaped like a Metropolis cluster's, made in memory with ``cryptography``.

What it copies from a real cluster (and why it matters to a client):

* Ed25519 keys everywhere, certificates valid until 9999-12-31.
* A self-signed cluster CA, "Metropolis Cluster CA".
* Node certificates that name the node ID only (CN and one DNS SAN), with extended
  key usage serverAuth only and **no IP SANs**: a client cannot check them against
  the address it dialled, only against the node ID it expects.
* An owner certificate (CN ``owner``, clientAuth), and metroctl's directory with the
  owner's key in Go's raw Ed25519 form, which ``ssl`` cannot load as it is.

Every :class:`ClusterPKI` is a new, unrelated cluster: make two for wrong-cluster
tests.
"""

from __future__ import annotations

import base64
import datetime
import os
import ssl
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .._credentials import METROCTL_KEY_PEM_TYPE

__all__ = ["CertifiedKey", "ClusterPKI", "NodeIdentity", "node_id_for"]

#: Metropolis certificates do not expire in practice: they run to the end of year 9999.
FOREVER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)

CA_COMMON_NAME = "Metropolis Cluster CA"


def node_id_for(public_key: ed25519.Ed25519PublicKey) -> str:
    """A node's ID, as Metropolis derives it from the node's Ed25519 public key.

    ``metropolis-`` followed by the hex of the key's first 16 bytes.
    """
    return "metropolis-" + public_key.public_bytes_raw()[:16].hex()


@dataclass(frozen=True)
class CertifiedKey:
    """A certificate and its private key.

    Attributes:
        certificate: The certificate.
        private_key: Its private key.
    """

    certificate: x509.Certificate
    private_key: CertificateIssuerPrivateKeyTypes

    @property
    def cert_pem(self) -> bytes:
        """The certificate, PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The private key, unencrypted PKCS#8 PEM."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> None:
        """Write the certificate (PEM) and the key (PKCS#8 PEM, mode 0600)."""
        Path(cert_path).write_bytes(self.cert_pem)
        _write_private(Path(key_path), self.key_pem)


@dataclass(frozen=True)
class NodeIdentity(CertifiedKey):
    """A node's server certificate and key.

    Attributes:
        node_id: The node's ID (``metropolis-`` and 32 hex digits), which its
            certificate names as CN and as its one DNS SAN.
    """

    node_id: str


class ClusterPKI:
    """A new cluster's CA, with an owner certificate; issues node certificates.

    Each instance is a separate cluster whose certificates no other instance accepts.

    Attributes:
        ca: The self-signed cluster CA ("Metropolis Cluster CA", Ed25519).
        owner: The owner's client certificate (CN ``owner``, clientAuth) and key.
    """

    def __init__(self) -> None:
        """Make the CA and the owner certificate."""
        key = ed25519.Ed25519PrivateKey.generate()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
        public = key.public_key()
        certificate = (
            _builder(name, name, public, _recently(), FOREVER)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, None)
        )
        self.ca = CertifiedKey(certificate, key)
        owner_key = ed25519.Ed25519PrivateKey.generate()
        self.owner = CertifiedKey(
            self.issue(
                owner_key.public_key(),
                common_name="owner",
                usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
            ),
            owner_key,
        )

    @property
    def ca_pem(self) -> bytes:
        """The cluster CA certificate, PEM (what metroctl keeps as ``ca.pem``)."""
        return self.ca.cert_pem

    def issue(
        self,
        public_key: CertificatePublicKeyTypes,
        *,
        common_name: str,
        dns_names: Sequence[str] = (),
        usages: Iterable[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.SERVER_AUTH,),
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime = FOREVER,
    ) -> x509.Certificate:
        """A leaf certificate for ``public_key`` (of any type), signed by this CA.

        For certificates a real cluster would not issue (expired, another key type,
        no serverAuth), which tests need. ``usages=None`` leaves out the extended key
        usage extension altogether.
        """
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        ca_key = self.ca.private_key
        builder = _builder(
            subject,
            self.ca.certificate.subject,
            public_key,
            _recently() if not_before is None else not_before,
            not_after,
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        if dns_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names]),
                critical=False,
            )
        if usages is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        return builder.sign(ca_key, None)

    def node(self, private_key: ed25519.Ed25519PrivateKey | None = None) -> NodeIdentity:
        """A node's identity: a new Ed25519 key (or the one given) and its certificate.

        The certificate is shaped like a Metropolis node's: CN = node ID, one DNS SAN
        = node ID, extended key usage serverAuth only, no IP SANs.
        """
        key = ed25519.Ed25519PrivateKey.generate() if private_key is None else private_key
        node_id = node_id_for(key.public_key())
        certificate = self.issue(key.public_key(), common_name=node_id, dns_names=[node_id])
        return NodeIdentity(certificate, key, node_id)

    def server_context(
        self, node: CertifiedKey, *, also_trust: Iterable[bytes] = ()
    ) -> ssl.SSLContext:
        """A server context for ``node``, shaped like a Curator's listener.

        It presents the node's certificate, speaks TLS 1.2 or newer with ALPN ``h2``,
        and asks for a client certificate without requiring one (a Curator checks it
        per call, so CA-only clients can still call ``GetCurrentLeader``).

        One difference from a real Curator remains: Python's ``ssl`` cannot ask for a
        client certificate without verifying one that is sent, so a certificate from
        another CA fails the handshake here (alert "unknown ca"), where a Curator
        completes it and answers ``UNAUTHENTICATED`` per call. To test that answer,
        pass the other cluster's CA (PEM) in ``also_trust``: its certificates then
        pass the handshake, and the fake must refuse them itself.
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["h2"])
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cadata=self.ca_pem.decode("ascii"))
        for pem in also_trust:
            ctx.load_verify_locations(cadata=pem.decode("ascii"))
        # OpenSSL loads certificates and keys from files only.
        with tempfile.TemporaryDirectory(prefix="trionodes-pki-") as directory:
            cert_path, key_path = Path(directory, "cert.pem"), Path(directory, "key.pem")
            node.write(cert_path, key_path)
            ctx.load_cert_chain(cert_path, key_path)
        return ctx

    def write_metroctl_dir(self, path: str | os.PathLike[str]) -> Path:
        """Write metroctl's files for this cluster's owner into ``path``; return it.

        ``ca.pem`` (the CA), ``owner.pem`` (the owner's certificate) and
        ``owner-key.pem`` (mode 0600), which holds the owner's key as metroctl keeps
        it: a ``METROPOLIS INITIAL OWNER PRIVATE KEY`` PEM block of Go's raw 64-byte
        Ed25519 key (the seed, then the public key). The directory is created if
        needed.
        """
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "ca.pem").write_bytes(self.ca_pem)
        (directory / "owner.pem").write_bytes(self.owner.cert_pem)
        _write_private(directory / "owner-key.pem", self.owner_key_metroctl_pem())
        return directory

    def owner_key_metroctl_pem(self) -> bytes:
        """The owner's key in metroctl's form (see :meth:`write_metroctl_dir`)."""
        key = self.owner.private_key
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        return go_ed25519_pem(key)


def go_ed25519_pem(key: ed25519.Ed25519PrivateKey) -> bytes:
    """``key`` as metroctl writes it: PEM of the 64 bytes seed + public key."""
    seed = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    raw = seed + key.public_key().public_bytes_raw()
    text = base64.b64encode(raw).decode("ascii")
    # Go's encoding/pem wraps the base64 at 64 characters.
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return (
        f"-----BEGIN {METROCTL_KEY_PEM_TYPE}-----\n"
        + "".join(line + "\n" for line in lines)
        + f"-----END {METROCTL_KEY_PEM_TYPE}-----\n"
    ).encode("ascii")


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _recently() -> datetime.datetime:
    # A little in the past, so that a test machine's clock a few seconds behind the
    # one that issued the certificate (another process, say) still accepts it.
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the start (not chmod afterwards): no moment where others can
    # read it. An existing file is replaced, with its mode reset too.
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
