"""Connect over mutual TLS (checked here against a fake Curator with trustme certificates)."""

# --8<-- [start:context]
import ssl


def curator_tls(ca_file: str, cert_file: str, key_file: str) -> ssl.SSLContext:
    """A client context for a Curator: trust the cluster CA, present our certificate."""
    context = ssl.create_default_context(cafile=ca_file)
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["h2"])  # gRPC runs over HTTP/2
    return context


# --8<-- [end:context]

import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import trio  # noqa: E402
import trustme  # noqa: E402

import trionodes  # noqa: E402
from trionodes.testing import make_node, open_fake_curator  # noqa: E402


async def main() -> None:
    ca = trustme.CA()
    server = ca.issue_cert("localhost")
    client = ca.issue_cert("client@example")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.configure_cert(server_context)
    ca.configure_trust(server_context)
    server_context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS
    server_context.set_alpn_protocols(["h2"])

    with tempfile.TemporaryDirectory() as tmp:
        ca_file, cert_file = Path(tmp, "ca.pem"), Path(tmp, "client.pem")
        ca.cert_pem.write_to_path(str(ca_file))
        client.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
        context = curator_tls(str(ca_file), str(cert_file), str(cert_file))

    async with open_fake_curator(ssl=server_context) as fake:
        fake.put(make_node(1))
        async with (
            trionodes.open_curator("localhost", fake.port, ssl=context) as curator,
            trionodes.open_node_changes(curator) as changes,
        ):
            batch = await changes.receive()
            print("over TLS:", [node.id for node in batch.new])


trio.run(main)
