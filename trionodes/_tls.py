"""TLS contexts for mutual TLS with a Curator (and for the fake Curator).

A Metropolis Curator serves gRPC over TLS and only answers clients that present a
certificate issued by the cluster CA. :func:`client_ssl_context` builds the client's
side of that from PEM files; :func:`server_ssl_context` builds a server's side (used by
the fake Curator of :mod:`trionodes.testing`).

Both follow what grpclib does for its own default client context: TLS 1.2 or newer,
forward-secret AEAD cipher suites only for TLS 1.2 (HTTP/2 forbids the others), and
ALPN ``h2`` (gRPC runs over HTTP/2, and servers refuse TLS connections that did not
negotiate it).
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeAlias

__all__ = ["PEMSource", "client_ssl_context", "server_ssl_context"]

PEMSource: TypeAlias = str | os.PathLike[str] | bytes
"""Where PEM data comes from: a file path (``str`` or path-like), or the PEM bytes."""

# The cipher suites grpclib's default client context uses for TLS 1.2 (TLS 1.3 suites
# are not affected by this setting and keep OpenSSL's defaults).
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"
_ALPN = ["h2"]


def client_ssl_context(
    ca: PEMSource,
    cert: PEMSource,
    key: PEMSource,
    *,
    key_password: str | bytes | None = None,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A client TLS context for a Curator, to pass to :func:`open_curator` as ``ssl``.

    The Curator's certificate is verified against ``ca`` (the cluster CA; the system's
    trust store is not used), and ``cert`` is presented to the Curator, which only
    serves clients whose certificate the cluster CA issued::

        ctx = trionodes.client_ssl_context("ca.pem", "owner.pem", "owner-key.pem")
        async with trionodes.open_curator(host, port, ssl=ctx) as curator:
            ...

    Each of ``ca``, ``cert`` and ``key`` is either a path to a PEM file (``str`` or
    path-like) or the PEM data itself as ``bytes`` (for example read from a secret
    store). A ``str`` is always a path. The CA bytes are loaded from memory; OpenSSL
    can only load a certificate chain and key from files, so PEM bytes given for
    ``cert`` or ``key`` are written to a private temporary directory (mode 0700, files
    0600) and deleted before this function returns.

    Host names: by default the Curator's certificate must name the host you connect
    to (a DNS name or IP address in its subjectAltName). If it names the Curator by
    another name, for example a node id, pass that name as ``server_hostname`` to
    :func:`open_curator`. If the certificates carry no usable name at all (a
    Metropolis node certificate proves "a node of this cluster", not an address),
    pass ``check_hostname=False``: the certificate is then still verified against
    the cluster CA, so only a holder of a certificate from that CA can pose as the
    Curator, but any node (or any other holder) of that CA would be accepted.

    Args:
        ca: The cluster CA certificate(s), to verify the Curator with.
        cert: The client certificate, optionally followed by its intermediates.
        key: The client certificate's private key.
        key_password: The password of ``key``, if it is encrypted. Without it an
            encrypted key is an error (OpenSSL would otherwise prompt on the
            terminal).
        check_hostname: Whether the Curator's certificate must name the host
            connected to (or ``server_hostname``).

    Returns:
        A new context; it is not shared, so it may be changed further.

    Raises:
        OSError: A file could not be read.
        ssl.SSLError: The PEM data is invalid, ``key`` does not match ``cert``, or
            ``key_password`` is wrong.
        ValueError: ``key`` is encrypted and ``key_password`` missing, or a ``str``
            holding PEM data was passed (pass it as ``bytes``).
    """
    # Not ssl.create_default_context: that would also trust the system's CAs.
    ctx = _base_context(server=False)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_verify(ctx, ca)
    _load_chain(ctx, cert, key, key_password)
    return ctx


def server_ssl_context(
    cert: PEMSource,
    key: PEMSource,
    *,
    client_ca: PEMSource | None = None,
    key_password: str | bytes | None = None,
) -> ssl.SSLContext:
    """A server TLS context, for example for the fake Curator.

    Args:
        cert: The server certificate, optionally followed by its intermediates.
        key: Its private key.
        client_ca: When given, clients must present a certificate issued by this CA
            (mutual TLS, as a Curator requires); the handshake fails otherwise.
        key_password: The password of ``key``, if it is encrypted.

    Returns:
        A new context (TLS 1.2 or newer, ALPN ``h2``).

    Raises:
        OSError: A file could not be read.
        ssl.SSLError: The PEM data is invalid, or ``key`` does not match ``cert``.
        ValueError: As for :func:`client_ssl_context`.
    """
    ctx = _base_context(server=True)
    _load_chain(ctx, cert, key, key_password)
    if client_ca is not None:
        _load_verify(ctx, client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _base_context(*, server: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_TLS12_CIPHERS)
    ctx.set_alpn_protocols(_ALPN)
    return ctx


def _load_verify(ctx: ssl.SSLContext, ca: PEMSource) -> None:
    if isinstance(ca, bytes):
        ctx.load_verify_locations(cadata=ca.decode("ascii"))
    else:
        ctx.load_verify_locations(cafile=_path(ca))


def _load_chain(
    ctx: ssl.SSLContext, cert: PEMSource, key: PEMSource, password: str | bytes | None
) -> None:
    with _as_file(cert, "cert.pem") as cert_file, _as_file(key, "key.pem") as key_file:
        ctx.load_cert_chain(
            cert_file, key_file, password=_no_password if password is None else password
        )


def _no_password() -> str:
    raise ValueError("the private key is encrypted: pass key_password")


def _path(source: str | os.PathLike[str]) -> str:
    path = os.fspath(source)
    if "-----BEGIN" in path:
        raise ValueError("PEM data must be passed as bytes; a str is a file path")
    return path


@contextmanager
def _as_file(source: PEMSource, name: str) -> Iterator[str]:
    """A path to ``source``: itself, or a private temporary file holding its bytes."""
    if not isinstance(source, bytes):
        yield _path(source)
        return
    # mkdtemp creates the directory with mode 0700.
    with tempfile.TemporaryDirectory(prefix="trionodes-tls-") as directory:
        path = os.path.join(directory, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(source)
        yield path
