"""Fake Curators for tests, demos and trying things out.

Two fakes serve the same cluster model (the same backlogs, changes, stalls and
statuses), held in memory and changed by the test:

* :func:`open_fake_curator` serves it over gRPC on 127.0.0.1: connect with
  :func:`trionodes.open_curator` and the test runs the real transport, and can
  fail the network too (freeze, drop, refuse, restart).
* :func:`open_memory_curator` serves it with no network: its ``curator`` goes
  straight to the watches. No sockets or threads, so it works under Trio's
  ``MockClock``, where waits take no wall time.

:func:`make_node` builds realistic nodes; :func:`run_churn` keeps a cluster
changing; :func:`settle` waits until the changes in flight have been handled.

For mutual TLS, pass ``ssl=server_ssl_context(cert, key, client_ca=ca)`` to
:func:`open_fake_curator` and connect with :func:`trionodes.client_ssl_context`;
set ``authorize`` to refuse calls with ``PERMISSION_DENIED`` or ``UNAUTHENTICATED``
as a Curator does.

:func:`open_fake_cluster` runs a whole control plane: several members on 127.0.0.1
sharing one cluster, one leader serving Watch, leadership moves, members down and
up, Metropolis-shaped TLS and a Curator's keepalive policy.
"""

from .._core.wire import encode_watch_event
from .._tls import server_ssl_context
from .._transport import WatchServer
from .._transport.server import CURATOR_PING_POLICY, GRPC_DEFAULT_PING_POLICY, PingPolicy
from ._cluster import FakeCluster, FakeMember, open_fake_cluster
from ._fake import FakeCurator, open_fake_curator
from ._memory import MemoryCurator, open_memory_curator
from ._model import AuthorizePolicy
from ._nodes import make_node, run_churn
from ._pki import CertifiedKey, ClusterPKI, NodeIdentity, node_id_for
from ._settle import settle

__all__ = [
    "CURATOR_PING_POLICY",
    "GRPC_DEFAULT_PING_POLICY",
    "AuthorizePolicy",
    "CertifiedKey",
    "ClusterPKI",
    "FakeCluster",
    "FakeCurator",
    "FakeMember",
    "MemoryCurator",
    "NodeIdentity",
    "PingPolicy",
    "WatchServer",
    "encode_watch_event",
    "make_node",
    "node_id_for",
    "open_fake_cluster",
    "open_fake_curator",
    "open_memory_curator",
    "run_churn",
    "server_ssl_context",
    "settle",
]
