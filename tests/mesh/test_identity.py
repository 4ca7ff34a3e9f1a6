"""Certificate mode: every node proves its node id with a certificate from the cluster CA.

Real certificates (made with ``cryptography`` by :mod:`memrepl.mesh.certs`), real TLS 1.3 on
127.0.0.1. Each attack is refused, counted under its code, logged, changes nothing in the store,
and the honest peer keeps converging.
"""

from __future__ import annotations

import ssl
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from memrepl.errors import CertificateError, MeshError, RevocationListError
from memrepl.mesh import certs
from memrepl.mesh.auth import Challenge, Refuse
from memrepl.mesh.config import TcpMeshConfig
from memrepl.mesh.identity import NodeCertificate
from memrepl.mesh.tcp import TcpMesh
from memrepl.protocol.enums import MemoryTier

from ..certs import Signer, ca_signer, signed, write_pair
from .conftest import FAST, SCHEMA, Cluster, Node, eventually, raw_rows
from .rawpeer import RawPeer

#: No throttling: these tests fail handshakes from 127.0.0.1 on purpose, over and over.
UNTHROTTLED = replace(FAST, auth_failures_allowed=10_000, revocation_poll_s=0.1)
#: Revocation takes effect "within seconds": a generous deadline, not a timing claim.
CUT_OFF_DEADLINE_S = 15.0


class Pki:
    """A cluster CA in a temporary directory, issuing node certificates on demand."""

    def __init__(self, directory: Path, name: str = "ca") -> None:
        self.directory = directory
        self.ca = directory / name
        certs.create_ca(self.ca)
        #: The latest certificate issued per node id.
        self.issued: dict[str, NodeCertificate] = {}

    def issue(self, node_id: str) -> NodeCertificate:
        """A new key and certificate for ``node_id`` (a new serial every time)."""
        out = self.directory / f"{self.ca.name}-{node_id}-{uuid.uuid4().hex[:6]}"
        certs.issue_node(self.ca, node_id, out)
        made = NodeCertificate.load(out / "node.crt", out / "node.key", out / "ca.crt")
        self.issued[node_id] = made
        return made


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


async def add(
    cluster: Cluster,
    pki: Pki,
    node_id: str,
    *,
    config: TcpMeshConfig = UNTHROTTLED,
    **options: object,
) -> Node:
    return await cluster.add(node_id, certificate=pki.issue(node_id), config=config, **options)


async def converges(a: Node, b: Node) -> None:
    """A write on ``a`` reaches ``b`` over their authenticated connection."""
    item_id = f"honest-{uuid.uuid4().hex[:8]}"
    a.store.working.add(item_id, {"ok": True})
    result = await a.manager.sync_with_peer(b.node_id, MemoryTier.WORKING)
    assert result.ok and result.items >= 1, result
    record = b.store.working.get_by_id(item_id)
    assert record is not None and record["content"] == {"ok": True}


def refused(node: Node, code: str) -> int:
    return node.mesh.stats().total.refused.get(code, 0)


async def test_nodes_with_certificates_connect_and_sync(cluster: Cluster, pki: Pki) -> None:
    b = await add(cluster, pki, "b")
    a = await add(cluster, pki, "a")
    cluster.dial(a, b)
    await cluster.connected(a, b)
    stats = b.mesh.stats()
    assert stats.auth is not None and stats.auth.mode == "certificate"
    seen = stats.peers["a"]
    assert seen.tls and seen.certificate_serial == pki.issued["a"].serial
    await converges(a, b)
    await converges(b, a)


async def test_a_node_without_an_admitted_certificate_cannot_connect(
    cluster: Cluster, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a = await add(cluster, pki, "a")
    b = await add(cluster, pki, "b")
    cluster.dial(a, b)
    await cluster.connected(a, b)
    before = raw_rows(b.store)

    # A certificate from another CA, for a node id the cluster does not even know.
    stranger = Pki(tmp_path, "other-ca")
    eve = await add(cluster, stranger, "eve")
    eve.store.working.add("forged", {"evil": True})
    cluster.dial(eve, b)
    # ... and one for a node id the cluster DOES know: the id is worth nothing without the CA.
    fake_a = TcpMesh(
        "a",
        schema_revision=SCHEMA,
        certificate=stranger.issue("a"),
        peers={"b": ("127.0.0.1", b.mesh.port)},
        config=UNTHROTTLED,
    )
    # A shared-key node, speaking plain TCP to a TLS port.
    keyed = await cluster.add("keyed", config=UNTHROTTLED)
    cluster.dial(keyed, b)
    async with fake_a:
        await eventually(lambda: refused(b, "bad-certificate") >= 3, timeout_s=10)
        assert fake_a.peers() == []
    assert "eve" not in b.mesh.peers() and "keyed" not in b.mesh.peers()
    assert eve.mesh.peers() == [] and keyed.mesh.peers() == []
    assert "TLS handshake failed" in caplog.text
    assert raw_rows(b.store) == before
    assert b.mesh.peers() == ["a"]  # the real a was never displaced
    assert b.mesh.stats().peers["a"].traffic.connects == 1
    await converges(a, b)


async def test_an_admitted_node_cannot_connect_as_another(
    cluster: Cluster, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: a key holder used to replace node-h's connection by claiming to be node-h.
    With certificates, mallory (admitted under its own id) cannot even finish the handshake."""
    h = await add(cluster, pki, "node-h")
    b = await add(cluster, pki, "b")
    cluster.dial(h, b)
    await cluster.connected(h, b)
    connects = b.mesh.stats().peers["node-h"].traffic.connects
    before = raw_rows(b.store)

    mallory = pki.issue("mallory")
    raw = await RawPeer.connect(b.mesh.port, "node-h", tls=mallory.client_ssl)
    answer = await raw.hello(SCHEMA, auth="certificate")
    assert isinstance(answer, Refuse) and answer.code == "identity-mismatch"
    assert "'node-h'" in answer.reason and "'mallory'" in answer.reason
    await raw.close()

    # As a whole node: a mesh claiming node-h with mallory's certificate will not even start.
    with pytest.raises(CertificateError, match="is for node 'mallory'"):
        TcpMesh("node-h", schema_revision=SCHEMA, certificate=mallory)

    # Counted once the node has closed that connection (just after the refusal went out).
    await eventually(lambda: refused(b, "identity-mismatch") == 1)
    assert b.mesh.stats().peers["node-h"].traffic.connects == connects
    assert b.mesh.peers() == ["node-h"] and h.mesh.peers() == ["b"]
    assert "claims node id 'node-h', but its certificate" in caplog.text
    assert raw_rows(b.store) == before
    await converges(h, b)


async def test_a_dialled_listener_must_hold_the_certificate_of_the_dialled_id(
    cluster: Cluster, pki: Pki
) -> None:
    b = await add(cluster, pki, "b")
    impostor = await add(cluster, pki, "mallory")
    b.mesh.add_peer("a", "127.0.0.1", impostor.mesh.port)  # b believes "a" listens there
    await eventually(lambda: refused(b, "identity-mismatch") >= 1)
    assert b.mesh.peers() == [] and impostor.mesh.peers() == []
    assert "dialled 'a', but the listener's certificate" in (
        b.mesh.stats().peers["a"].traffic.last_error or ""
    )


async def test_a_revoked_node_is_cut_off_and_cannot_reconnect(
    cluster: Cluster, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    revoked = tmp_path / "revoked.txt"
    revoked.write_text("# nobody yet\n")
    b = await add(cluster, pki, "b", revocation_list=revoked)
    a = await add(cluster, pki, "a")
    c = await add(cluster, pki, "c")
    cluster.dial(a, b)
    cluster.dial(c, b)
    b.mesh.add_peer("c", "127.0.0.1", c.mesh.port)  # b dials c too: both directions are cut
    await cluster.connected(a, b)
    await cluster.connected(c, b)
    assert b.mesh.stats().auth.revoked_entries == 0  # type: ignore[union-attr]

    revoked.write_text("# c's machine was lost\nnode:c\n")
    await eventually(lambda: "c" not in b.mesh.peers(), timeout_s=CUT_OFF_DEADLINE_S)
    # c keeps dialling, and b keeps dialling c: every attempt is refused.
    await eventually(lambda: refused(b, "revoked") >= 3, timeout_s=CUT_OFF_DEADLINE_S)
    assert "c" not in b.mesh.peers() and b.mesh.peers() == ["a"]
    assert c.mesh.stats().total.refused.get("revoked", 0) >= 1  # c was told why
    assert b.mesh.stats().auth.revoked_entries == 1  # type: ignore[union-attr]
    assert "cutting off peer 'c': node 'c' is on the revocation list" in caplog.text
    await converges(a, b)  # no re-keying of anyone else

    # Un-revoked (the list reloaded again, no restart): c is back.
    revoked.write_text("")
    await cluster.connected(c, b, timeout_s=CUT_OFF_DEADLINE_S)
    await converges(c, b)


async def test_revoking_one_certificate_by_serial(
    cluster: Cluster, pki: Pki, tmp_path: Path
) -> None:
    revoked = tmp_path / "revoked.txt"
    revoked.write_text("")
    b = await add(cluster, pki, "b", revocation_list=revoked)
    a = await add(cluster, pki, "a")
    cluster.dial(a, b)
    await cluster.connected(a, b)
    serial = b.mesh.stats().peers["a"].certificate_serial
    assert serial is not None
    revoked.write_text(f"serial:{serial.upper()}\n")  # hex in any case
    await eventually(lambda: "a" not in b.mesh.peers(), timeout_s=CUT_OFF_DEADLINE_S)
    assert "(serial " + serial + ") is on the revocation list" in (
        b.mesh.stats().auth.last_refusal or ""  # type: ignore[union-attr]
    )
    # node "a" with a NEW certificate (the old key leaked) is admitted again at once.
    await cluster.stop_mesh("a")
    renewed = await cluster.add("a", certificate=pki.issue("a"), config=UNTHROTTLED, store=a.store)
    cluster.dial(renewed, b)
    await cluster.connected(renewed, b, timeout_s=CUT_OFF_DEADLINE_S)


async def test_a_broken_revocation_list_keeps_the_entries_in_force(
    cluster: Cluster, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    revoked = tmp_path / "revoked.txt"
    revoked.write_text("node:c\n")
    b = await add(cluster, pki, "b", revocation_list=revoked)
    revoked.write_text("node:c\nc\n")  # a line that is not an entry
    await eventually(lambda: b.mesh.stats().auth.revocation_error is not None)  # type: ignore[union-attr]
    stats = b.mesh.stats().auth
    assert stats is not None and stats.revoked_entries == 1
    assert "line 2: 'c' is not 'node:ID' or 'serial:HEX'" in (stats.revocation_error or "")
    assert caplog.text.count("revocation list not reloaded") == 1  # logged once, not per poll
    revoked.unlink()  # a deleted list does not readmit anyone either
    await eventually(lambda: "No such file" in (b.mesh.stats().auth.revocation_error or ""))  # type: ignore[union-attr]
    assert b.mesh.stats().auth.revoked_entries == 1  # type: ignore[union-attr]


async def test_certificate_mode_arguments_are_checked(pki: Pki, tmp_path: Path) -> None:
    a = pki.issue("a")
    with pytest.raises(MeshError, match="exactly one"):
        TcpMesh("a", b"k" * 32, schema_revision=SCHEMA, certificate=a)
    with pytest.raises(MeshError, match="revocation list needs certificate mode"):
        TcpMesh("a", b"k" * 32, schema_revision=SCHEMA, revocation_list=tmp_path / "x")
    with pytest.raises(RevocationListError, match="cannot read the revocation list"):
        TcpMesh("a", schema_revision=SCHEMA, certificate=a, revocation_list=tmp_path / "x")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with pytest.raises(MeshError, match="brings its own TLS"):
        TcpMesh("a", schema_revision=SCHEMA, certificate=a, server_ssl=server)


async def test_mixed_modes_refuse_each_other_with_a_reason(cluster: Cluster, pki: Pki) -> None:
    b = await add(cluster, pki, "b")
    mallory = pki.issue("mallory")
    raw = await RawPeer.connect(b.mesh.port, "mallory", tls=mallory.client_ssl)
    answer = await raw.hello(SCHEMA, auth="shared-key")
    assert isinstance(answer, Refuse) and answer.code == "auth-mode-mismatch"
    await raw.close()
    raw = await RawPeer.connect(b.mesh.port, "mallory", tls=mallory.client_ssl)
    answer = await raw.hello(SCHEMA, auth="certificate")
    assert isinstance(answer, Challenge) and answer.node_id == "b"  # the honest path goes on
    await raw.close()


def client_tls(out: Path, leaf: Signer, *chain: x509.Certificate) -> ssl.SSLContext:
    """A TLS client context presenting ``leaf`` (and ``chain`` after it)."""
    cert, key = write_pair(out, leaf, *chain)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    tls.load_cert_chain(cert, key)
    return tls


async def try_as(port: int, node_id: str, tls: ssl.SSLContext) -> object:
    """Connect with ``tls`` claiming ``node_id``: the listener's refusal, or how it hung up."""
    try:
        raw = await RawPeer.connect(port, node_id, tls=tls)
        try:
            return await raw.hello(SCHEMA, auth="certificate")
        finally:
            await raw.close()
    except (AssertionError, OSError, ssl.SSLError) as exc:
        return exc


async def test_a_node_uri_that_is_not_utf8_is_a_bad_certificate(
    cluster: Cluster, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A CA-signed certificate whose node URI percent-encodes bytes that are not UTF-8 used to
    end its handshake in a UnicodeDecodeError traceback, uncounted and unanswered."""
    b = await add(cluster, pki, "b")
    odd = signed(ca_signer(pki.ca), "odd", "memrepl://node/%ff%fe")
    with pytest.raises(CertificateError, match="not UTF-8"):
        certs.node_id_of(odd[0])
    answer = await try_as(b.mesh.port, "odd", client_tls(tmp_path / "odd", odd))
    assert isinstance(answer, Refuse) and answer.code == "bad-certificate", answer
    assert "not UTF-8" in answer.reason
    await eventually(lambda: refused(b, "bad-certificate") == 1)
    assert "Traceback" not in caplog.text and "UnicodeDecodeError" not in caplog.text


async def test_certificates_the_ca_did_not_issue_to_a_node_are_refused(
    cluster: Cluster, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each way to hold a certificate for node id 'a' without the CA having issued one to 'a'
    today: refused, counted as bad-certificate, logged with the reason, and the real 'a' (never
    connected here) is not displaced from anything."""
    b = await add(cluster, pki, "b")
    ca = ca_signer(pki.ca)
    mallory = pki.issue("mallory")
    mallory_key = serialization.load_pem_private_key(mallory.key.read_bytes(), None)
    assert isinstance(mallory_key, ec.EllipticCurvePrivateKey)
    own = (certs.load_certificate(mallory.cert), mallory_key)
    intermediate = signed(ca, "sub-ca", ca=True)
    attempts = {
        # An admitted node signs a certificate for another id with its own key.
        "node-as-ca": (signed(own, "a", certs.node_uri("a")), [own[0]], "invalid CA certificate"),
        # A certificate the CA issued for 'a' once, expired.
        "expired": (signed(ca, "a", certs.node_uri("a"), days=-1), [], "expired"),
        # A certificate from the CA for something else: no node URI.
        "no-node": (signed(ca, "a", "https://a.example/"), [], "names no memrepl node"),
        # Two node URIs: which node would it be?
        "two-nodes": (
            signed(ca, "a", certs.node_uri("mallory"), certs.node_uri("a")),
            [],
            "names 2 memrepl nodes",
        ),
        # Through an intermediate CA: the cluster CA has path length 0.
        "intermediate": (
            signed(intermediate, "a", certs.node_uri("a")),
            [intermediate[0]],
            "path length constraint exceeded",
        ),
    }
    for done, (name, (leaf, chain, reason)) in enumerate(attempts.items(), start=1):
        answer = await try_as(b.mesh.port, "a", client_tls(tmp_path / name, leaf, *chain))
        assert not isinstance(answer, Challenge), (name, answer)
        await eventually(lambda done=done: refused(b, "bad-certificate") == done)
        assert reason in caplog.records[-1].getMessage(), name
    assert b.mesh.peers() == [] and "a" not in b.mesh.stats().peers
