"""Where and how the commands connect: one server, or whichever node leads a cluster.

``watch`` and ``top`` follow a :class:`Target`: a lone Curator through
:func:`trionodes.open_curator` (what ``trionodes serve`` runs), or a Metropolis
cluster through :func:`trionodes.open_cluster`, which finds the leader and follows
it when it moves. Cluster mode is chosen on the command line, by several endpoints,
``--metroctl-config`` or ``--cluster`` (see :func:`~trionodes.cli._options.make_target`).

Credentials for a cluster are read when the command connects, not when the command
line is parsed, so that a problem with them is reported like any other failure to
connect: as one ``trionodes: error:`` line naming the file, in the command line's
words (:func:`terminal_words`).
"""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trionodes
from trionodes import Credentials, CuratorError, Endpoint, StatusCode, TLSError
from trionodes._transport.errors import NOT_TLS_REASONS

from ._format import short_id

# How many endpoints a title names before it says how many more there are.
_TITLE_ENDPOINTS = 3
# Hex digits of a node id kept when a leader is named on one line (as top's rows).
LEADER_ID_TAIL = 8

SERVER_TLS_HINT = (
    "TLS needs --ca (the cluster CA), --cert and --key; if the Curator's certificate "
    "names another host, add --server-hostname NAME or --no-check-hostname"
)
_SERVER_TLS_FILES_HINT = (
    "check that --ca is the CA that issued the Curator's certificate, and that it "
    "issued the certificate of --cert; if the Curator's certificate names another host "
    "than {where}, add --server-hostname NAME or --no-check-hostname"
)
_SERVER_NO_CREDENTIALS_HINT = (
    "{where} may serve TLS, as a real Curator does: give --ca (the cluster CA), --cert "
    "and --key (for `trionodes serve --tls DIR`, the files it wrote into DIR), or "
    "--metroctl-config [DIR] to follow a cluster as its owner"
)
_PLAIN_TEXT_HINT = (
    "{where} speaks plain text, as `trionodes serve` does without --tls: leave out {options}"
)
_CLUSTER_PLAIN_TEXT_HINT = (
    "the nodes speak plain text, as `trionodes serve --members N` does without --tls: "
    "leave out {options}"
)
_NO_CREDENTIALS_HINT = (
    "the nodes may serve TLS, as a Metropolis cluster does: give --metroctl-config "
    "[DIR], or --ca, --cert and --key"
)
CLUSTER_TLS_HINT = (
    "each node must prove to be a node of the cluster whose CA is --ca (ca.pem in the "
    "--metroctl-config directory): check that the files are this cluster's, and that "
    "the endpoints are its control-plane nodes"
)
_FOLLOWER_HINT = (
    "{where} does not serve the Curator's Watch: it may be a control-plane node that "
    "does not lead the cluster now. Add --cluster (or give several endpoints, or "
    "--metroctl-config) to follow whichever node leads"
)
# The library's TLSError for a server that answered a TLS handshake with something
# else (the name of the check, should its cause be missing).
_NOT_TLS_PHRASE = "does not seem to serve TLS"

# The library's messages speak of its functions and keyword arguments; the terminal
# has flags. Each pattern is a phrase of a message of the library, as it stands.
_KEYWORDS_AS_FLAGS = (
    (re.compile(r"\b(as|in) (ca|cert|key)\b(?=[);,.]|$)"), r"\1 --\2"),
    (re.compile(r"; (ca|cert|key) must be\b"), r"; --\1 must be"),
    (re.compile(r"\bis `ca` the cluster CA\?"), "is --ca the cluster CA?"),
    (
        re.compile(r"\bpass the directory it uses as config_dir\b"),
        "give the directory it uses: --metroctl-config DIR",
    ),
    (re.compile(r"\bpass config_dir\b"), "give --metroctl-config DIR"),
    (
        re.compile(r"\bpass ssl=trionodes\.client_ssl_context\(\.\.\.\) to open_curator\b"),
        "give --metroctl-config [DIR], or --ca, --cert and --key",
    ),
    (
        re.compile(
            r"\bpass server_hostname= to open_curator, or check_hostname=False to "
            r"client_ssl_context\b"
        ),
        "give --server-hostname NAME, or --no-check-hostname",
    ),
    # The names of the gRPC watch requests, in the log lines of older versions.
    (re.compile(r"\bNodesInCluster watch of (\S+)"), r"watch of the cluster at \1"),
    (re.compile(r"\bNodeInCluster watch of (\S+) on (\S+)"), r"watch of node \1 at \2"),
)


def terminal_words(message: str) -> str:
    """``message`` with the library's keyword arguments named as this command's flags.

    For example "pass the client certificate as cert" becomes "... as --cert", and
    "pass the directory it uses as config_dir" names ``--metroctl-config DIR``. Used on
    every error and log line the commands print.
    """
    for pattern, replacement in _KEYWORDS_AS_FLAGS:
        message = pattern.sub(replacement, message)
    return message


@dataclass(frozen=True, slots=True)
class CredentialFiles:
    """Where the credentials for a cluster come from; read by :meth:`load`.

    Attributes:
        metroctl: Read metroctl's configuration directory.
        metroctl_dir: That directory; None for metroctl's own default
            (``$XDG_CONFIG_HOME/metroctl``).
        ca: The cluster CA certificate (PEM), when not from metroctl.
        cert: The client certificate (PEM), with ``key``.
        key: The client certificate's private key.
    """

    metroctl: bool = False
    metroctl_dir: Path | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @property
    def given(self) -> bool:
        """Whether any credentials were asked for (else: plain text)."""
        return self.metroctl or self.ca is not None

    def load(self) -> Credentials | None:
        """Read and check the files; None when none were given (plain text).

        Raises:
            CredentialsError: A file or the directory is missing, unreadable or of the
                wrong kind; the message names it (:func:`terminal_words` puts it in
                flags).
        """
        if self.metroctl:
            return Credentials.from_metroctl(self.metroctl_dir)
        if self.ca is None:
            return None
        return Credentials.from_pem_files(ca=self.ca, cert=self.cert, key=self.key)


def endpoints_text(endpoints: Sequence[Endpoint]) -> str:
    """The endpoints for a title: the first few, then how many more there are."""
    shown = " ".join(map(str, endpoints[:_TITLE_ENDPOINTS]))
    more = len(endpoints) - _TITLE_ENDPOINTS
    return f"{shown} and {more} more" if more > 0 else shown


def leader_text(curator: trionodes.Curator, *, whole_id: bool = False) -> str:
    """Who leads, as the cluster connection knows it now: id and address.

    Args:
        curator: The connection of :func:`trionodes.open_cluster`.
        whole_id: Write the whole node id, not one shortened for a screen.
    """
    if curator.leader_id is None:
        return "looking for the leader"
    where = Endpoint(curator.host, curator.port)
    node_id = curator.leader_id if whole_id else short_id(curator.leader_id, LEADER_ID_TAIL)
    return f"leader {node_id} at {where}"


@dataclass(frozen=True, slots=True)
class Target:
    """What ``watch`` and ``top`` follow: one Curator, or a cluster's leader.

    Attributes:
        endpoints: The endpoints given, in order (one for a single server).
        cluster: Follow whichever node leads (:func:`trionodes.open_cluster`);
            else the one server at ``endpoints[0]`` (:func:`trionodes.open_curator`).
        ssl: For a single server: the client TLS context, None for plain text.
        server_hostname: For a single server: the name its certificate must hold,
            if not the endpoint's host.
        credentials: For a cluster: where its credentials come from.
    """

    endpoints: tuple[Endpoint, ...]
    cluster: bool = False
    ssl: ssl.SSLContext | None = None
    server_hostname: str | None = None
    credentials: CredentialFiles = field(default_factory=CredentialFiles)

    def __str__(self) -> str:
        return endpoints_text(self.endpoints)

    def connect(self) -> contextlib.AbstractAsyncContextManager[trionodes.Curator]:
        """Open the connection: :func:`trionodes.open_cluster` or ``open_curator``.

        Raises (on entering):
            CredentialsError: In cluster mode, the credentials cannot be used.
        """
        if self.cluster:
            return self._open_cluster()
        endpoint = self.endpoints[0]
        return trionodes.open_curator(
            endpoint.host, endpoint.port, ssl=self.ssl, server_hostname=self.server_hostname
        )

    @contextlib.asynccontextmanager
    async def _open_cluster(self) -> AsyncIterator[trionodes.Curator]:
        credentials = self.credentials.load()  # before anything is sent
        endpoints = [str(endpoint) for endpoint in self.endpoints]
        async with trionodes.open_cluster(endpoints, credentials=credentials) as curator:
            yield curator

    def hint(self, exc: BaseException) -> str | None:
        """What to try next after ``exc`` ended the command, in flags; None if nothing."""
        if isinstance(exc, TLSError):
            return self._tls_hint(exc)
        if (
            not self.cluster
            and isinstance(exc, CuratorError)
            and exc.status is StatusCode.UNIMPLEMENTED
        ):
            return _FOLLOWER_HINT.format(where=self.endpoints[0])
        return None

    def _tls_hint(self, exc: TLSError) -> str:
        where = self.endpoints[0]
        if self.cluster:
            if not self.credentials.given:
                return _NO_CREDENTIALS_HINT
            if speaks_plain_text(exc):
                options = (
                    "--metroctl-config" if self.credentials.metroctl else "--ca, --cert and --key"
                )
                return _CLUSTER_PLAIN_TEXT_HINT.format(options=options)
            return CLUSTER_TLS_HINT
        if self.ssl is None:
            return _SERVER_NO_CREDENTIALS_HINT.format(where=where)
        if speaks_plain_text(exc):
            return _PLAIN_TEXT_HINT.format(where=where, options="--ca, --cert and --key")
        return _SERVER_TLS_FILES_HINT.format(where=where)


def speaks_plain_text(exc: TLSError) -> bool:
    """Whether ``exc`` says the server answered the TLS handshake in something else.

    As when TLS options are given for ``trionodes serve`` without ``--tls``: the
    cause is an ``ssl.SSLError`` whose reason is one of the library's "not TLS" ones.
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError) and cause.reason in NOT_TLS_REASONS:
            return True
        cause = cause.__cause__
    return _NOT_TLS_PHRASE in str(exc)
