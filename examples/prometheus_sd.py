"""Keep a Prometheus ``file_sd`` target file of a cluster's nodes up to date.

Usage:

    python examples/prometheus_sd.py ENDPOINT OUTPUT [--port 9100]
        [--ca FILE --cert FILE --key FILE]

OUTPUT is a JSON list of target groups, one per node that is UP and has an
address: ``ADDRESS:PORT`` as the target, with the node's id, roles and labels as
Prometheus labels. Point a ``file_sd_configs`` entry of Prometheus at it; Prometheus
rereads it when it changes. The file is rewritten once per batch of changes that
alter a target, atomically. Stop with Ctrl-C.

ENDPOINT is the Curator's address, ``HOST`` or ``HOST:PORT`` (port 7835 by default;
an IPv6 address in brackets, as ``[fd00::1]:7835``). Try it against the simulated
Curator: run `trionodes serve` and pass the address it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import trio

import trionodes

# Characters a Prometheus label name may not hold.
_NOT_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")


def roles(node: trionodes.Node) -> list[str]:
    """The node's roles, sorted. A role is set when its message is not None."""
    if node.roles is None:
        return []
    found = {
        "consensus": node.roles.consensus_member,
        "controller": node.roles.kubernetes_controller,
        "worker": node.roles.kubernetes_worker,
    }
    return [name for name, role in found.items() if role is not None]


def target_group(node: trionodes.Node, port: int) -> dict[str, Any] | None:
    """The node's file_sd target group, or None when it is not to be scraped.

    Returns:
        ``{"targets": ["ADDRESS:PORT"], "labels": {...}}`` for a node that is UP and
        has an address. Labels: ``node_id``; ``roles``, the roles comma-separated
        between commas (``,controller,worker,``, so that a relabel regex such as
        ``.*,controller,.*`` picks a role); and ``node_label_KEY`` for each of the
        node's labels (characters not allowed in label names become ``_``).
    """
    address = node.status.external_address if node.status else ""
    if node.state is not trionodes.NodeState.UP or not address:
        return None
    host = f"[{address}]" if ":" in address else address  # an IPv6 address in brackets
    labels = {"node_id": node.id, "roles": f",{','.join(roles(node))},"}
    for pair in node.labels.pairs if node.labels else []:
        labels[f"node_label_{_NOT_LABEL_NAME.sub('_', pair.key)}"] = pair.value
    return {"targets": [f"{host}:{port}"], "labels": labels}


def write_atomically(path: Path, text: str) -> None:
    """Replace the file at ``path`` with ``text`` in one step (see hosts_file.py)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


class ScrapeTargets(trionodes.Follower):
    """A follower that keeps a file_sd file with one target group per UP node."""

    def __init__(self, path: Path, port: int) -> None:
        self.path = path
        self.port = port
        self.nodes: dict[str, trionodes.Node] = {}  # node id -> node, all to be scraped

    def filter(self, node: trionodes.Node) -> bool:
        return target_group(node, self.port) is not None

    def equals(self, a: trionodes.Node, b: trionodes.Node) -> bool:
        # Changes that leave the target group as it was need no new file.
        return target_group(a, self.port) == target_group(b, self.port)

    def new(self, node: trionodes.Node) -> None:
        self.nodes[node.id] = node

    def updated(self, prev: trionodes.Node, node: trionodes.Node) -> None:
        self.nodes[node.id] = node

    def deleted(self, prev: trionodes.Node) -> None:
        del self.nodes[prev.id]

    async def batch_done(self) -> None:
        groups = [target_group(self.nodes[node_id], self.port) for node_id in sorted(self.nodes)]
        text = json.dumps(groups, indent=2) + "\n"
        await trio.to_thread.run_sync(write_atomically, self.path, text)
        print(f"wrote {self.path}: {len(groups)} targets", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Keep a Prometheus file_sd file of a cluster.")
    parser.add_argument(
        "endpoint", metavar="ENDPOINT", help="the Curator's address: HOST or HOST:PORT"
    )
    parser.add_argument("output", type=Path, help="the file to write")
    parser.add_argument(
        "--port", type=int, default=9100, help="the port to scrape on each node (default 9100)"
    )
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
        await trionodes.watch_nodes(curator, ScrapeTargets(args.output, args.port))


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
