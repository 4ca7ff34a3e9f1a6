"""TLS on top of the HMAC authentication, with a self-signed certificate made at test time."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from memrepl.protocol.enums import MemoryTier

from .conftest import Cluster, tier_state
from .rawpeer import RawPeer


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost and its key, made with the ``openssl`` command.

    (The ``cryptography`` package is not a dependency of memrepl, so the command line tool is
    used; the test is skipped where it is missing.)
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("TLS test needs the openssl command to make a self-signed certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


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
    assert tier_state(b.store, MemoryTier.WORKING) == tier_state(a.store, MemoryTier.WORKING)

    # A client speaking plain text to the TLS port gets nowhere.
    raw = await RawPeer.connect(b.mesh.port)
    await raw.write(b"\x00" * 64)
    assert await raw.reader.read() == b""
    await raw.close()
    assert b.mesh.peers() == ["a"]
