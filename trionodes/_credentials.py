"""Credentials for a Metropolis cluster: its CA, and a client certificate with its key.

:class:`Credentials` reads and checks the files once, when it is built, so that a bad
file is reported (naming it) before any connection is tried. The transport then asks it
for a client TLS context (:meth:`Credentials._client_context`) and, after each
handshake, to check the server's certificate (:meth:`Credentials._verify_server`).

Why the server is checked by hand rather than by OpenSSL: a context that trusts the
cluster CA also completes the client's certificate chain from that trust store, so
OpenSSL sends two certificates (the client's and the CA), and a Curator refuses every
``Watch`` from a client that sent more than one. The client context therefore trusts
nothing, and the server's certificate is checked here, against the CA read at
construction, before any request goes out.

``cryptography`` is imported only when credentials are built or a server is checked:
it costs about 0.1 s to import, which a program that never uses TLS should not pay.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import logging
import os
import re
import ssl
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, final

from ._errors import TLSError, TrionodesError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

__all__ = ["Credentials", "CredentialsError"]

_log = logging.getLogger("trionodes")

#: The PEM block type metroctl writes ``owner-key.pem`` with: 64 raw bytes, Go's
#: ``ed25519.PrivateKey`` (the 32-byte seed, then the 32-byte public key).
METROCTL_KEY_PEM_TYPE = "METROPOLIS INITIAL OWNER PRIVATE KEY"

# The DER of a PKCS#8 PrivateKeyInfo for Ed25519 (RFC 8410) is fixed up to the seed:
# SEQUENCE(46) { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING(34) {
# OCTET STRING(32) { seed } } }. So the 32-byte seed alone completes it.
_ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")

# TLS 1.2 cipher suites: forward-secret AEAD only (HTTP/2 forbids the others); the
# same choice as grpclib's default client context. TLS 1.3 suites are not affected.
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"

# Key file labels OpenSSL-compatible loaders understand (PKCS#8, PKCS#1, SEC1).
_STANDARD_KEY_LABELS = frozenset({"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"})

# Names for the messages, by dotted OID (RFC 5280 section 4.2.1.12).
_USAGE_NAMES = {
    "1.3.6.1.5.5.7.3.1": "serverAuth",
    "1.3.6.1.5.5.7.3.2": "clientAuth",
    "1.3.6.1.5.5.7.3.3": "codeSigning",
    "1.3.6.1.5.5.7.3.4": "emailProtection",
    "2.5.29.37.0": "anyExtendedKeyUsage",
}

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([^\r\n-]*)-----\r?\n(.*?)-----END \1-----",
    re.DOTALL,
)


class CredentialsError(TrionodesError):
    """A credentials file is missing, unreadable, of the wrong kind, or does not fit.

    Raised by the constructors of :class:`Credentials`, before any connection is
    tried. The message names the file and says what to do about it.

    Attributes:
        path: The file (or directory) at fault, or ``None`` when the fault lies
            between files that each read fine.
    """

    __module__ = "trionodes"

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


@final
class Credentials:
    """The cluster CA, and optionally a client certificate and its key.

    Build it with :meth:`from_metroctl` (the files a cluster's owner has) or
    :meth:`from_pem_files`; the constructor checks everything it can before any
    connection is tried and raises :class:`CredentialsError` naming the file at fault.

    The CA alone is enough to find the leader (``GetCurrentLeader`` needs no client
    certificate); watching needs the client certificate and key too.

    The files are read once, when the credentials are built: what was checked is what
    is presented, even if the files change later. Build new credentials to pick up new
    files.
    """

    __module__ = "trionodes"
    __slots__ = ("_ca_path", "_cas", "_cert_path", "_cert_pem", "_key_path", "_key_pem")

    _ca_path: Path
    _cert_path: Path | None
    _key_path: Path | None
    _cas: tuple[x509.Certificate, ...]
    _cert_pem: bytes | None
    _key_pem: bytes | None

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError(
            "Credentials has no public constructor: use Credentials.from_metroctl() or "
            "Credentials.from_pem_files(ca=..., cert=..., key=...)"
        )

    @classmethod
    def _create(
        cls,
        *,
        ca_path: Path,
        cas: Sequence[x509.Certificate],
        cert_path: Path | None,
        cert_pem: bytes | None,
        key_path: Path | None,
        key_pem: bytes | None,
    ) -> Credentials:
        self = cls.__new__(cls)
        self._ca_path = ca_path
        self._cas = tuple(cas)
        self._cert_path = cert_path
        self._cert_pem = cert_pem
        self._key_path = key_path
        self._key_pem = key_pem
        return self

    @classmethod
    def from_pem_files(
        cls,
        *,
        ca: str | os.PathLike[str],
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
    ) -> Credentials:
        """Credentials from PEM files.

        Args:
            ca: The cluster CA certificate (metroctl's ``ca.pem``). Servers are
                accepted only with a certificate this CA issued.
            cert: The client certificate, exactly one (a Curator refuses a client that
                sends more), issued by ``ca``.
            key: Its private key: PKCS#8 (``PRIVATE KEY``), PKCS#1 (``RSA PRIVATE
                KEY``), SEC1 (``EC PRIVATE KEY``), or metroctl's raw Ed25519 form
                (``METROPOLIS INITIAL OWNER PRIVATE KEY``). Not encrypted.

        ``cert`` and ``key`` go together: give both or neither.

        Raises:
            CredentialsError: A file is missing, unreadable or of the wrong kind; the
                key does not match the certificate; the certificate was not issued by
                the CA; the CA is not a CA; a certificate has expired.
        """
        if (cert is None) != (key is None):
            given, missing = ("cert", "key") if key is None else ("key", "cert")
            raise CredentialsError(
                f"{given} was given without {missing}: pass both the client certificate "
                "and its key, or neither (the CA alone can find the leader but not watch)"
            )
        return _build(
            _as_path(ca, "ca"),
            None if cert is None else _as_path(cert, "cert"),
            None if key is None else _as_path(key, "key"),
            metroctl=False,
        )

    @classmethod
    def from_metroctl(cls, config_dir: str | os.PathLike[str] | None = None) -> Credentials:
        """The credentials metroctl keeps: ``ca.pem``, ``owner.pem`` and ``owner-key.pem``.

        Args:
            config_dir: metroctl's configuration directory (what ``metroctl --config``
                names). By default ``$XDG_CONFIG_HOME/metroctl``, or
                ``~/.config/metroctl`` when ``XDG_CONFIG_HOME`` is unset, empty or not
                an absolute path (the XDG rule).

        Raises:
            CredentialsError: As for :meth:`from_pem_files`, and when the directory
                does not exist.
        """
        directory = _metroctl_dir() if config_dir is None else _as_path(config_dir, "config_dir")
        if not directory.is_dir():
            raise CredentialsError(
                f"{directory}: no metroctl configuration directory there. Take ownership "
                "of the cluster with metroctl first (it writes ca.pem, owner.pem and "
                "owner-key.pem there), or pass the directory it uses as config_dir",
                directory,
            )
        return _build(
            directory / "ca.pem",
            directory / "owner.pem",
            directory / "owner-key.pem",
            metroctl=True,
        )

    @property
    def ca_path(self) -> Path:
        """The cluster CA file the credentials were read from."""
        return self._ca_path

    @property
    def cert_path(self) -> Path | None:
        """The client certificate file, or ``None`` for CA-only credentials."""
        return self._cert_path

    @property
    def key_path(self) -> Path | None:
        """The client key file, or ``None`` for CA-only credentials."""
        return self._key_path

    def __repr__(self) -> str:
        # Paths only: the key material must never reach a log through a repr.
        parts = [f"ca={str(self._ca_path)!r}"]
        if self._cert_path is not None:
            parts.append(f"cert={str(self._cert_path)!r}")
        if self._key_path is not None:
            parts.append(f"key={str(self._key_path)!r}")
        return f"Credentials({', '.join(parts)})"

    def _client_context(self) -> ssl.SSLContext:
        """A new client context: presents the client certificate alone, trusts nothing.

        The CA is deliberately not loaded: OpenSSL would use it to complete the
        client's chain and send two certificates, which a Curator refuses. The server
        is therefore unverified by OpenSSL, and the caller must pass its certificate
        to :meth:`_verify_server` before sending any request.
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # check_hostname must be cleared before verify_mode may drop to CERT_NONE.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(_TLS12_CIPHERS)
        ctx.set_alpn_protocols(["h2"])
        if self._cert_pem is not None and self._key_pem is not None:
            _load_chain_from_memory(ctx, self._cert_pem, self._key_pem, self._key_path)
        return ctx

    def _verify_server(self, der: bytes, node_id: str | None) -> None:
        """Check the server's leaf certificate as a node of this cluster.

        Args:
            der: The server's certificate, DER (``getpeercert(binary_form=True)``).
            node_id: The node the server must be (its certificate's CN or a DNS SAN),
                or ``None`` for any node of the cluster. Never an IP address: node
                certificates name no addresses.

        Raises:
            TLSError: The certificate was not issued by the cluster CA, is outside its
                validity period (or the CA is), is not a server certificate
                (extended key usage serverAuth), or names another node.
        """
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID

        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise TLSError(f"the server's certificate could not be parsed: {exc}") from exc
        subject = cert.subject.rfc4514_string() or "(empty subject)"
        issuer = _issuer_among(cert, self._cas)
        if issuer is None:
            raise TLSError(
                f"the server's certificate ({subject}, issued by "
                f"{cert.issuer.rfc4514_string()}) was not issued by the cluster CA in "
                f"{self._ca_path}: the server belongs to another cluster, or that file is "
                "not this cluster's CA"
            )
        now = datetime.datetime.now(datetime.UTC)
        for checked, what in ((cert, "the server's certificate"), (issuer, "the cluster CA")):
            problem = _validity_problem(checked, now)
            if problem is not None:
                raise TLSError(f"{what} ({checked.subject.rfc4514_string()}) {problem}")
        usages = _extended_key_usages(cert)
        if ExtendedKeyUsageOID.SERVER_AUTH not in usages:
            shown = ", ".join(
                _USAGE_NAMES.get(oid.dotted_string, oid.dotted_string) for oid in usages
            )
            raise TLSError(
                f"the server's certificate ({subject}) is not a server certificate: its "
                f"extended key usage is {shown or 'absent'}, without serverAuth"
            )
        if node_id is not None:
            names = _node_names(cert)
            if node_id.lower() not in {name.lower() for name in names}:
                raise TLSError(
                    f"the server's certificate names {', '.join(sorted(names)) or 'no node'}"
                    f", not node {node_id!r}: this address belongs to another node of the "
                    "cluster than the one expected"
                )


def _build(
    ca_path: Path, cert_path: Path | None, key_path: Path | None, *, metroctl: bool
) -> Credentials:
    """Read and check the files; the shared body of both constructors."""
    from cryptography.hazmat.primitives import serialization

    ca_hint = (
        "metroctl writes it when it takes ownership of the cluster"
        if metroctl
        else "pass the cluster CA certificate (metroctl's ca.pem) as ca"
    )
    cas = _read_certificates(ca_path, "the cluster CA", ca_hint)
    for ca in cas:
        _check_is_ca(ca, ca_path)
    if cert_path is None or key_path is None:
        return Credentials._create(
            ca_path=ca_path, cas=cas, cert_path=None, cert_pem=None, key_path=None, key_pem=None
        )

    cert_hint = (
        "metroctl writes owner.pem when it takes ownership of the cluster"
        if metroctl
        else "pass the client certificate as cert"
    )
    certs = _read_certificates(cert_path, "the client certificate", cert_hint)
    if len(certs) > 1:
        raise CredentialsError(
            f"{cert_path}: holds {len(certs)} certificates. A Curator accepts a client "
            "that sends exactly one; keep only the client certificate in this file "
            "(the CA goes in ca)",
            cert_path,
        )
    cert = certs[0]
    key = _read_private_key(key_path, metroctl=metroctl)

    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise CredentialsError(
            f"{key_path}: this private key does not belong to the certificate in "
            f"{cert_path} ({cert.subject.rfc4514_string()}): pass the key that was "
            "made with that certificate",
            key_path,
        )
    if _issuer_among(cert, cas) is None:
        raise CredentialsError(
            f"{cert_path}: the client certificate ({cert.subject.rfc4514_string()}, "
            f"issued by {cert.issuer.rfc4514_string()}) was not issued by the cluster CA "
            f"in {ca_path}: the two files belong to different clusters",
            cert_path,
        )
    problem = _validity_problem(cert, datetime.datetime.now(datetime.UTC))
    if problem is not None:
        raise CredentialsError(f"{cert_path}: the client certificate {problem}", cert_path)

    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Credentials._create(
        ca_path=ca_path,
        cas=cas,
        cert_path=cert_path,
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_path=key_path,
        key_pem=key_pem,
    )


def _as_path(value: str | os.PathLike[str], name: str) -> Path:
    if isinstance(value, bytes | bytearray):
        raise TypeError(f"{name} must be a path (str or os.PathLike), not PEM bytes")
    path = Path(os.fspath(value))
    if "-----BEGIN" in str(path):
        raise CredentialsError(f"{name} must be a path to a PEM file, not the PEM data itself")
    return path


def _metroctl_dir() -> Path:
    # The XDG base directory rule: an empty or relative XDG_CONFIG_HOME is ignored.
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "metroctl"
    try:
        home = Path.home()
    except RuntimeError as exc:
        raise CredentialsError(
            "cannot find metroctl's configuration: XDG_CONFIG_HOME is unset and the home "
            "directory is unknown; pass config_dir"
        ) from exc
    return home / ".config" / "metroctl"


@dataclass(frozen=True)
class _Block:
    label: str
    der: bytes
    text: bytes
    encrypted: bool


def _read(path: Path, role: str, hint: str) -> tuple[bytes, int]:
    """The file's bytes and permission bits, or a CredentialsError saying why not."""
    try:
        with open(path, "rb") as file:
            mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
            data = file.read()
    except FileNotFoundError as exc:
        raise CredentialsError(f"{path}: {role} file does not exist ({hint})", path) from exc
    except IsADirectoryError as exc:
        raise CredentialsError(f"{path}: is a directory, not {role} file ({hint})", path) from exc
    except PermissionError as exc:
        raise CredentialsError(
            f"{path}: {role} file cannot be read (permission denied): run as the user "
            "that owns it, or give this user read access",
            path,
        ) from exc
    except OSError as exc:
        raise CredentialsError(f"{path}: {role} file cannot be read: {exc}", path) from exc
    return data, mode


def _pem_blocks(data: bytes) -> list[_Block]:
    blocks = []
    for match in _PEM_BLOCK.finditer(data):
        label = match.group(1).decode("ascii", "replace")
        body = match.group(2)
        lines = body.splitlines()
        # RFC 1421 headers ("Proc-Type: 4,ENCRYPTED") come first, then a blank line.
        encrypted = any(b"ENCRYPTED" in line for line in lines if b":" in line)
        payload = b"".join(line.strip() for line in lines if b":" not in line)
        try:
            der = base64.b64decode(payload, validate=True)
        except binascii.Error:
            der = b""
        blocks.append(_Block(label, der, match.group(0), encrypted))
    return blocks


def _not_pem(path: Path, data: bytes, expected: str) -> NoReturn:
    if not data.strip():
        raise CredentialsError(f"{path}: is empty, expected {expected}", path)
    if data[:1] == b"\x30":
        raise CredentialsError(
            f"{path}: looks like binary DER, expected PEM ({expected}); convert it with "
            "openssl (x509 or pkey, -inform der)",
            path,
        )
    raise CredentialsError(
        f"{path}: is not a PEM file (no -----BEGIN ...----- block), expected {expected}", path
    )


def _read_certificates(path: Path, role: str, hint: str) -> list[x509.Certificate]:
    from cryptography import x509

    data, _ = _read(path, role, hint)
    blocks = _pem_blocks(data)
    if not blocks:
        _not_pem(path, data, "a certificate (-----BEGIN CERTIFICATE-----)")
    certificates = [block for block in blocks if block.label == "CERTIFICATE"]
    if not certificates:
        labels = ", ".join(sorted({block.label for block in blocks}))
        kind = "a private key" if "PRIVATE KEY" in labels else f"a {labels} block"
        raise CredentialsError(
            f"{path}: holds {kind}, not a certificate; {role} must be a certificate "
            "(-----BEGIN CERTIFICATE-----). Were two files swapped?",
            path,
        )
    loaded = []
    for block in certificates:
        try:
            loaded.append(x509.load_der_x509_certificate(block.der))
        except ValueError as exc:
            raise CredentialsError(
                f"{path}: holds a CERTIFICATE block that is not a valid certificate "
                f"({exc}); the file is damaged",
                path,
            ) from exc
    return loaded


def _read_private_key(path: Path, *, metroctl: bool) -> PrivateKeyTypes:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    hint = (
        "metroctl writes owner-key.pem when it takes ownership of the cluster"
        if metroctl
        else "pass the client certificate's private key as key"
    )
    data, mode = _read(path, "the client key", hint)
    blocks = _pem_blocks(data)
    if not blocks:
        _not_pem(path, data, "a private key (-----BEGIN PRIVATE KEY-----)")
    keys = [
        block
        for block in blocks
        if block.label in _STANDARD_KEY_LABELS
        or block.label in ("ENCRYPTED PRIVATE KEY", METROCTL_KEY_PEM_TYPE)
    ]
    if not keys:
        labels = ", ".join(sorted({block.label for block in blocks}))
        raise CredentialsError(
            f"{path}: holds {labels}, not a private key; key must be the client "
            "certificate's private key (PKCS#8, PKCS#1, SEC1 PEM or metroctl's "
            "owner-key.pem). Were two files swapped?",
            path,
        )
    if len(keys) > 1:
        raise CredentialsError(
            f"{path}: holds {len(keys)} private keys; keep only the client "
            "certificate's key in this file",
            path,
        )
    block = keys[0]
    if block.label == "ENCRYPTED PRIVATE KEY" or block.encrypted:
        raise CredentialsError(
            f"{path}: the private key is encrypted; decrypt it into a file of mode 0600 "
            "(openssl pkey -in ENCRYPTED -out KEY) and pass that",
            path,
        )
    key: PrivateKeyTypes
    if block.label == METROCTL_KEY_PEM_TYPE:
        try:
            pkcs8 = _go_ed25519_to_pkcs8(block.der)
        except ValueError as exc:
            raise CredentialsError(f"{path}: {exc}; the file is damaged", path) from exc
        key = serialization.load_der_private_key(pkcs8, password=None)
        assert isinstance(key, ed25519.Ed25519PrivateKey)
    else:
        try:
            key = serialization.load_pem_private_key(block.text, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise CredentialsError(
                f"{path}: holds a {block.label} block that could not be read as a "
                f"private key ({exc}); the file is damaged or of an unsupported kind",
                path,
            ) from exc
    if mode & 0o077:
        _log.warning(
            "%s: the private key file is accessible by its group or others (mode %04o); "
            "anyone who can read it can act as this client. Run: chmod 600 %s",
            path,
            mode,
            path,
        )
    return key


def _go_ed25519_to_pkcs8(raw: bytes) -> bytes:
    """Go's 64-byte ``ed25519.PrivateKey`` (seed, then public key) as PKCS#8 DER.

    Raises:
        ValueError: Not 64 bytes, or the public half does not match the seed.
    """
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if len(raw) != 64:
        raise ValueError(
            f"a {METROCTL_KEY_PEM_TYPE} block must hold 64 bytes (a Go Ed25519 "
            f"private key), this one holds {len(raw)}"
        )
    seed, public = raw[:32], raw[32:]
    # The public half is redundant; a mismatch means corruption, and a key that would
    # fail every handshake (or, worse, sign with a key other than the certified one).
    derived = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    if derived != public:
        raise ValueError("the key's public half does not match its seed")
    return _ED25519_PKCS8_PREFIX + seed


def _spki(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    der: bytes = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _check_is_ca(ca: x509.Certificate, path: Path) -> None:
    from cryptography import x509

    subject = ca.subject.rfc4514_string()
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    not_ca = constraints is not None and not constraints.ca
    # An old-style certificate without basicConstraints is only taken as a CA if it
    # is self-issued, as a trust anchor would be.
    not_ca = not_ca or (constraints is None and ca.issuer != ca.subject)
    try:
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    not_ca = not_ca or (usage is not None and not usage.key_cert_sign)
    if not_ca:
        raise CredentialsError(
            f"{path}: {subject} is not a CA certificate (it cannot issue certificates); "
            "ca must be the cluster CA (metroctl's ca.pem), not a node's or a client's "
            "certificate",
            path,
        )


def _issuer_among(
    cert: x509.Certificate, cas: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    """The CA of ``cas`` whose key signed ``cert`` (any key type), or ``None``."""
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

    for ca in cas:
        try:
            # Checks the issuer name against the CA's subject, then the signature
            # with the CA's public key (Ed25519, ECDSA or RSA).
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return ca
    return None


def _validity_problem(cert: x509.Certificate, now: datetime.datetime) -> str | None:
    if now < cert.not_valid_before_utc:
        return (
            f"is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC "
            f"(now {now:%Y-%m-%d %H:%M:%S} UTC): check this machine's clock"
        )
    if now > cert.not_valid_after_utc:
        return (
            f"expired at {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC "
            f"(now {now:%Y-%m-%d %H:%M:%S} UTC): check this machine's clock"
        )
    return None


def _extended_key_usages(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    from cryptography import x509

    try:
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return []


def _node_names(cert: x509.Certificate) -> set[str]:
    """The names a certificate gives its holder: CNs and DNS SANs, never addresses."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    names = {
        attribute.value
        for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if isinstance(attribute.value, str)
    }
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    names.update(san.get_values_for_type(x509.DNSName))
    return names


def _load_chain_from_memory(
    ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes, key_path: Path | None
) -> None:
    """Load a certificate and key held in memory (OpenSSL's loader wants files).

    They go to a private temporary directory (mode 0700, files 0600) that is deleted
    as soon as OpenSSL has read them.
    """
    with tempfile.TemporaryDirectory(prefix="trionodes-credentials-") as directory:
        paths = []
        for name, data in (("cert.pem", cert_pem), ("key.pem", key_pem)):
            path = os.path.join(directory, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            paths.append(path)
        try:
            ctx.load_cert_chain(paths[0], paths[1])
        except ssl.SSLError as exc:
            # Checked at construction, so this means OpenSSL cannot use this key type.
            raise CredentialsError(
                f"{key_path}: OpenSSL ({ssl.OPENSSL_VERSION}) cannot load this key: {exc}",
                key_path,
            ) from exc
