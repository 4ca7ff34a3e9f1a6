"""TLS on top of the HMAC authentication, with a self-signed certificate made at test time."""

from __future__ import annotations

import ssl
from pathlib import Path

from memrepl.protocol.enums import MemoryTier

from ..certs import self_signed
from ..replicas import replicated
from .conftest import Cluster
from .rawpeer import RawPeer


async def test_nodes_sync_over_tls(cluster: Cluster, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))  # verifies the cert and 127.0.0.1

    b = await cluster.add("b", server_ssl=server)
    a = await cluster.add("a", client_ssl=client)
    cluster.dial(a, b)
    await cluster.connected(a, b)
    assert b.mesh.stats().peers["a"].tls and a.mesh.stats().peers["b"].tls
    a.store.working.add("secret", {"over": "tls"})
    assert (await a.manager.sync_with_peer("b", MemoryTier.WORKING)).ok
    assert replicated(b.store, MemoryTier.WORKING) == replicated(a.store, MemoryTier.WORKING)

    # A client speaking plain text to the TLS port gets nowhere.
    raw = await RawPeer.connect(b.mesh.port)
    await raw.write(b"\x00" * 64)
    assert await raw.reader.read() == b""
    await raw.close()
    assert b.mesh.peers() == ["a"]
