"""Keep an /etc/hosts-style file of a cluster's nodes up to date.

Usage:

    python examples/hosts_file.py ENDPOINT OUTPUT [--ca FILE --cert FILE --key FILE]

Each line of OUTPUT maps a node's address to its id, so that the nodes can be
reached by id. The file is rewritten once per batch of changes, atomically: a reader
sees the old file or the new one, never a mix. Stop with Ctrl-C.

ENDPOINT is the Curator's address, ``HOST`` or ``HOST:PORT`` (port 7835 by default;
an IPv6 address in brackets, as ``[fd00::1]:7835``). Try it against the simulated
Curator: run `trionodes serve` and pass the address it prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import trio

import trionodes


# --8<-- [start:address]
def address(node: trionodes.Node) -> str | None:
    """The node's external address, or None when it has not reported one."""
    return (node.status.external_address if node.status else "") or None


# --8<-- [end:address]


# --8<-- [start:render]
def hosts_text(nodes: dict[str, trionodes.Node]) -> str:
    """The file's text: a header, then one ``ADDRESS<tab>NODE_ID`` line per node."""
    lines = ["# Nodes of the cluster, written by hosts_file.py. Do not edit."]
    lines += [f"{address(nodes[node_id])}\t{node_id}" for node_id in sorted(nodes)]
    return "\n".join(lines) + "\n"


# --8<-- [end:render]


# --8<-- [start:write]
def write_atomically(path: Path, text: str) -> None:
    """Replace the file at ``path`` with ``text`` in one step.

    The text goes to a temporary file in the same directory, which then takes the
    place of the old file (``os.replace`` is atomic within a file system).
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())  # the new bytes are on disk before the rename
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a hosts file is not
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


# --8<-- [end:write]


# --8<-- [start:follower]
class HostsFile(trionodes.Follower):
    """A follower that keeps ``path`` listing every node that has an address."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.nodes: dict[str, trionodes.Node] = {}  # node id -> node, all with an address

    def filter(self, node: trionodes.Node) -> bool:
        return address(node) is not None

    def equals(self, a: trionodes.Node, b: trionodes.Node) -> bool:
        # Only the address is written: other changes need no new file.
        return address(a) == address(b)

    def new(self, node: trionodes.Node) -> None:
        self.nodes[node.id] = node

    def updated(self, prev: trionodes.Node, node: trionodes.Node) -> None:
        self.nodes[node.id] = node

    def deleted(self, prev: trionodes.Node) -> None:
        del self.nodes[prev.id]

    async def batch_done(self) -> None:
        text = hosts_text(self.nodes)
        # Writing (and fsync) can block: do it on a worker thread.
        await trio.to_thread.run_sync(write_atomically, self.path, text)
        print(f"wrote {self.path}: {len(self.nodes)} hosts", flush=True)


# --8<-- [end:follower]


# --8<-- [start:main]
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Keep a hosts file of a cluster's nodes.")
    parser.add_argument(
        "endpoint", metavar="ENDPOINT", help="the Curator's address: HOST or HOST:PORT"
    )
    parser.add_argument("output", type=Path, help="the file to write")
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
        await trionodes.watch_nodes(curator, HostsFile(args.output))


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
# --8<-- [end:main]
