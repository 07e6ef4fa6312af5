"""Throwaway certificates for ``trionodes serve --tls``: a CA, a server and a client.

Made by trustme (the ``serve-tls`` extra); the standard library cannot make keys or
certificates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ServeFiles:
    """The certificates ``trionodes serve --tls DIR`` writes (PEM files)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certificates(directory: Path, host: str) -> ServeFiles:
    """Make a throwaway CA, a server and a client certificate, as PEM files.

    The server certificate names ``localhost``, ``127.0.0.1``, ``::1`` and ``host``.
    Private keys are written with mode 0600. Files of an earlier run are replaced.

    Args:
        directory: Where to write them; created if missing.
        host: The address the server listens on.

    Raises:
        ImportError: trustme, which makes them, is not installed (an optional
            dependency: only this needs it, and the cryptography package under it).
        OSError: The files could not be written.
    """
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    directory = directory.resolve()
    files = ServeFiles(
        *(
            directory / name
            for name in ("ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem")
        )
    )
    ca = trustme.CA(organization_name="trionodes serve")
    names = dict.fromkeys(["localhost", "127.0.0.1", "::1", host])
    server = ca.issue_cert(*names)
    client = ca.issue_cert("trionodes-client.invalid")
    _write_file(files.ca, ca.cert_pem.bytes(), private=False)
    for issued, cert, key in (
        (server, files.server_cert, files.server_key),
        (client, files.client_cert, files.client_key),
    ):
        _write_file(cert, b"".join(blob.bytes() for blob in issued.cert_chain_pems), private=False)
        _write_file(key, issued.private_key_pem.bytes(), private=True)
    return files


def _write_file(path: Path, data: bytes, *, private: bool) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
