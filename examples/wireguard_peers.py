"""Keep a WireGuard-style peer list of a cluster's nodes up to date.

Usage:

    python examples/wireguard_peers.py ENDPOINT OUTPUT [--port 51820] [--self NODE_ID]
        [--ca FILE --cert FILE --key FILE]

OUTPUT holds one ``[Peer]`` section per node that is UP and has a WireGuard public
key and an address: its public key, its endpoint (``ADDRESS:PORT``) and, as allowed
IPs, the prefixes the node routes for the cluster network. This is the shape of the
peers of a node's cluster mesh: add an ``[Interface]`` section to make it a whole
configuration. ``--self`` leaves out the node this runs on. The file is rewritten
once per batch of changes that alter a peer, atomically. Stop with Ctrl-C.

ENDPOINT is the Curator's address, ``HOST`` or ``HOST:PORT`` (port 7835 by default;
an IPv6 address in brackets, as ``[fd00::1]:7835``). Try it against the simulated
Curator: run `trionodes serve` and pass the address it prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import trio

import trionodes


@dataclass(frozen=True)
class Peer:
    """What the peer list says about one node."""

    node_id: str
    public_key: str
    endpoint: str
    allowed_ips: tuple[str, ...]

    def section(self) -> str:
        lines = [
            f"# {self.node_id}",
            "[Peer]",
            f"PublicKey = {self.public_key}",
            f"Endpoint = {self.endpoint}",
        ]
        if self.allowed_ips:
            lines.append(f"AllowedIPs = {', '.join(self.allowed_ips)}")
        return "\n".join(lines) + "\n"


def peer(node: trionodes.Node, port: int) -> Peer | None:
    """The node as a peer, or None when it cannot be one (not UP, no key or address)."""
    address = node.status.external_address if node.status else ""
    clusternet = node.clusternet
    if node.state is not trionodes.NodeState.UP or not address or not clusternet:
        return None
    if not clusternet.wireguard_pubkey:
        return None
    host = f"[{address}]" if ":" in address else address  # an IPv6 address in brackets
    prefixes = tuple(sorted(prefix.cidr for prefix in clusternet.prefixes))
    return Peer(node.id, clusternet.wireguard_pubkey, f"{host}:{port}", prefixes)


def write_atomically(path: Path, text: str) -> None:
    """Replace the file at ``path`` with ``text`` in one step (see hosts_file.py)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)  # stays mode 0600: a mesh's layout is not for everyone
    except BaseException:
        os.unlink(temporary)
        raise


class PeerList(trionodes.Follower):
    """A follower that keeps a file of WireGuard peers, one per UP node but ``own_id``."""

    def __init__(self, path: Path, port: int, own_id: str | None = None) -> None:
        self.path = path
        self.port = port
        self.own_id = own_id
        self.nodes: dict[str, trionodes.Node] = {}  # node id -> node, all peers

    def filter(self, node: trionodes.Node) -> bool:
        return node.id != self.own_id and peer(node, self.port) is not None

    def equals(self, a: trionodes.Node, b: trionodes.Node) -> bool:
        # A new address or key matters; a new label, say, does not.
        return peer(a, self.port) == peer(b, self.port)

    def new(self, node: trionodes.Node) -> None:
        self.nodes[node.id] = node

    def updated(self, prev: trionodes.Node, node: trionodes.Node) -> None:
        self.nodes[node.id] = node

    def deleted(self, prev: trionodes.Node) -> None:
        del self.nodes[prev.id]

    async def batch_done(self) -> None:
        peers = [peer(self.nodes[node_id], self.port) for node_id in sorted(self.nodes)]
        text = "\n".join(found.section() for found in peers if found is not None)
        await trio.to_thread.run_sync(write_atomically, self.path, text)
        print(f"wrote {self.path}: {len(peers)} peers", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Keep a WireGuard peer list of a cluster.")
    parser.add_argument(
        "endpoint", metavar="ENDPOINT", help="the Curator's address: HOST or HOST:PORT"
    )
    parser.add_argument("output", type=Path, help="the file to write")
    parser.add_argument(
        "--port", type=int, default=51820, help="the WireGuard port of the nodes (default 51820)"
    )
    parser.add_argument("--self", dest="own_id", metavar="NODE_ID", help="the node to leave out")
    parser.add_argument("--ca", help="cluster CA certificate (PEM), for mutual TLS")
    parser.add_argument("--cert", help="client certificate (PEM)")
    parser.add_argument("--key", help="client certificate's key (PEM)")
    args = parser.parse_args()
    if (args.ca, args.cert, args.key).count(None) not in (0, 3):
        parser.error("mutual TLS needs --ca, --cert and --key together")
    try:
        # The library's own parser: HOST, HOST:PORT, [V6] or [V6]:PORT.
        args.endpoint = trionodes.parse_endpoint(args.endpoint)
    except trionodes.EndpointError as exc:
        fail(parser.prog, f"bad ENDPOINT: {exc}")
    args.ssl = None
    if args.ca:
        try:
            args.ssl = trionodes.client_ssl_context(args.ca, args.cert, args.key)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            fail(parser.prog, f"cannot use --ca, --cert and --key: {exc}")
    return args


def fail(prog: str, message: str, status: int = 2) -> NoReturn:
    """Print one error line (no traceback) and exit: 2 for a bad command line."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(status)


async def main(args: argparse.Namespace) -> None:
    endpoint = args.endpoint
    async with trionodes.open_curator(endpoint.host, endpoint.port, ssl=args.ssl) as curator:
        await trionodes.watch_nodes(curator, PeerList(args.output, args.port, args.own_id))


if __name__ == "__main__":
    arguments = parse_args()
    try:
        trio.run(main, arguments)
    except* KeyboardInterrupt:
        pass
    except* trionodes.TrionodesError as errors:
        # Refused by the Curator, or TLS that retrying cannot fix: one line each.
        for error in errors.exceptions:
            print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
