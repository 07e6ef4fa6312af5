"""Connect over mutual TLS (checked here against a fake Curator with trustme certificates)."""

import tempfile
from pathlib import Path

import trio
import trustme

import trionodes
from trionodes.testing import make_node, open_fake_curator, server_ssl_context


async def follow_over_tls(port: int, ca_file: Path, cert_file: Path, key_file: Path) -> None:
    # --8<-- [start:context]
    context = trionodes.client_ssl_context(ca=ca_file, cert=cert_file, key=key_file)
    async with (
        trionodes.open_curator("localhost", port, ssl=context) as curator,
        trionodes.open_node_changes(curator) as changes,
    ):
        batch = await changes.receive()
        print("over TLS:", [node.id for node in batch.new])
    # --8<-- [end:context]


async def main() -> None:
    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as tmp:
        files = {name: Path(tmp, f"{name}.pem") for name in ("ca", "server", "client")}
        ca.cert_pem.write_to_path(str(files["ca"]))
        ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(
            str(files["server"])
        )
        client = ca.issue_cert("client@example")
        client.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
        # The Curator side: its certificate, and client certificates required.
        server = server_ssl_context(files["server"], files["server"], client_ca=files["ca"])
        async with open_fake_curator(ssl=server) as fake:
            fake.put(make_node(1))
            await follow_over_tls(fake.port, files["ca"], files["client"], files["client"])


trio.run(main)
