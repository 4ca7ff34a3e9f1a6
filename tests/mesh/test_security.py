"""Attacks on a node's TcpMesh: each is refused, counted, logged, changes nothing in the store,
and the node keeps serving its honest peer.

The attacker is :class:`~tests.mesh.rawpeer.RawPeer`, a hand-driven client. Where an attack
needs an authenticated session (a flipped byte, a replay, a gzip bomb), the raw peer holds the
cluster key: it stands in for an honest sender whose frames are tampered with on the way, or for
a compromised one, and shows that the receiver's checks hold frame by frame. A frame that fails
its seal ends its connection (nothing after it can be trusted); a new connection carries on.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from memrepl.errors import ClusterKeyError
from memrepl.mesh.auth import HEADER_SEAL_BYTES, Hello, new_nonce
from memrepl.mesh.config import TcpMeshConfig
from memrepl.mesh.tcp import TcpMesh
from memrepl.node import Node as MeshNode
from memrepl.node.config import read_key_file
from memrepl.protocol.enums import MemoryTier, MessageTypes

from .conftest import KEY, SCHEMA, Cluster, Node, eventually, raw_rows
from .rawpeer import RawPeer, batch_bytes, gzip_bomb_batch, raw_header

WRONG_KEY = b"not-the-cluster-key-but-32-bytes"
LIMIT = 1 << 20
GUARDED = TcpMeshConfig(
    heartbeat_interval_s=0.5,
    idle_timeout_s=5.0,
    reconnect_base_s=0.05,
    reconnect_cap_s=0.3,
    max_frame_bytes=LIMIT,
)


@pytest.fixture
async def pair(cluster: Cluster) -> AsyncIterator[tuple[Node, Node]]:
    """``b`` is attacked; ``a`` is its honest peer, connected and synced once."""
    b = await cluster.add("b", config=GUARDED)
    a = await cluster.add("a", config=GUARDED)
    cluster.dial(a, b)
    await cluster.connected(a, b)
    a.store.working.add("seed", {"v": 0})
    assert (await a.manager.sync_with_peer("b", MemoryTier.WORKING)).ok
    yield a, b


async def serves_honest_peer(a: Node, b: Node) -> None:
    """A write on the honest node still reaches the attacked one."""
    assert "a" in b.mesh.peers()
    item_id = f"honest-{uuid.uuid4().hex[:8]}"
    a.store.working.add(item_id, {"ok": True})
    result = await a.manager.sync_with_peer("b", MemoryTier.WORKING)
    assert result.ok and result.items == 1, result
    record = b.store.working.get_by_id(item_id)
    assert record is not None and record["content"] == {"ok": True}


async def authenticated(b: Node) -> RawPeer:
    raw = await RawPeer.connect(b.mesh.port)
    assert await raw.handshake(KEY, SCHEMA) is None
    await eventually(lambda: "mallory" in b.mesh.peers())
    return raw


def refused(b: Node, code: str, peer: str | None = "mallory") -> int:
    stats = b.mesh.stats()
    counters = stats.total if peer is None else stats.peers[peer].traffic
    return counters.refused.get(code, 0)


async def test_peer_with_wrong_key_is_refused(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    before = raw_rows(b.store)
    raw = await RawPeer.connect(b.mesh.port)
    refusal = await raw.handshake(WRONG_KEY, SCHEMA)
    assert refusal is not None and refusal.code == "auth-failed"
    assert await raw.reader.read() == b""  # the node closed the connection
    await raw.close()
    assert refused(b, "auth-failed", peer=None) == 1
    assert b.mesh.stats().total.handshake_failures == 1
    assert "mallory" not in b.mesh.stats().peers
    assert "auth-failed" in caplog.text
    assert raw_rows(b.store) == before
    await serves_honest_peer(a, b)


async def test_node_with_wrong_key_never_connects(
    pair: tuple[Node, Node], cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    before = raw_rows(b.store)
    eve = await cluster.add("eve", key=WRONG_KEY, config=GUARDED)
    eve.store.working.add("forged", {"evil": True})
    cluster.dial(eve, b)  # eve dials b: b refuses eve's proof (eve refuses b's first)
    cluster.dial(b, eve)  # b dials eve: b refuses eve's proof
    await eventually(lambda: b.mesh.stats().total.handshake_failures >= 2)
    await eventually(lambda: b.mesh.stats().peers["eve"].traffic.handshake_failures >= 1)
    assert eve.mesh.stats().total.refused.get("auth-failed", 0) >= 1
    assert "eve" not in b.mesh.peers() and eve.mesh.peers() == []
    assert b.mesh.stats().peers["eve"].traffic.delivered == 0
    assert "did not prove it holds the cluster key" in caplog.text
    assert raw_rows(b.store) == before
    await serves_honest_peer(a, b)


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(32 + 24 + 40, id="payload"),
        pytest.param(13, id="header-msg-type"),
        pytest.param(20, id="header-length"),
        pytest.param(33, id="sequence"),
        pytest.param(32 + 12, id="header-hmac"),
        pytest.param(-1, id="frame-hmac"),
    ],
)
async def test_frame_with_flipped_byte_ends_the_connection(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture, where: int
) -> None:
    a, b = pair
    raw = await authenticated(b)
    before = raw_rows(b.store)
    frame = raw.seal(MessageTypes.VECTOR_SYNC, batch_bytes("mallory", "b", "evil-1", {"x": 1}))
    flipped = bytearray(frame)
    flipped[where] ^= 0x01
    await raw.write(bytes(flipped))
    # Nothing after an altered frame can be trusted on that connection: it ends at once.
    goodbye = await raw.expect(MessageTypes.DISCONNECT)
    assert goodbye["code"] == "bad-hmac"
    await raw.expect_closed()
    await raw.close()
    assert refused(b, "bad-hmac") == 1 and refused(b, "bad-hmac", peer=None) == 1
    assert "bad-hmac" in caplog.text
    assert raw_rows(b.store) == before
    # A new connection (a new session) carries the same batch through.
    raw = await authenticated(b)
    batch = batch_bytes("mallory", "b", "evil-1", {"x": 1})
    await raw.write(raw.seal(MessageTypes.VECTOR_SYNC, batch))
    ack = await raw.expect(MessageTypes.ACK)
    assert (ack["batch_id"], ack["applied"]) == ("raw-evil-1", 1)
    await raw.close()
    await serves_honest_peer(a, b)


async def test_replayed_frame_is_refused(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    raw = await authenticated(b)
    frame = raw.seal(MessageTypes.VECTOR_SYNC, batch_bytes("mallory", "b", "once", {"n": 1}))
    await raw.write(frame)
    assert (await raw.expect(MessageTypes.ACK))["applied"] == 1
    before = raw_rows(b.store)
    delivered = b.mesh.stats().peers["mallory"].traffic.delivered

    await raw.write(frame)  # the same bytes again, in the same session
    goodbye = await raw.expect(MessageTypes.DISCONNECT)
    assert goodbye["code"] == "bad-sequence" and "replayed" in goodbye["reason"]
    await raw.expect_closed()
    await raw.close()

    raw = await authenticated(b)  # ... and in a later session
    await raw.write(frame)
    assert (await raw.expect(MessageTypes.DISCONNECT))["code"] == "bad-hmac"
    await raw.close()

    assert refused(b, "bad-sequence") == 1 and refused(b, "bad-hmac") == 1
    assert b.mesh.stats().peers["mallory"].traffic.delivered == delivered
    assert "replayed" in caplog.text
    assert raw_rows(b.store) == before
    await serves_honest_peer(a, b)


async def test_reordered_frames_are_refused(pair: tuple[Node, Node]) -> None:
    a, b = pair
    raw = await authenticated(b)
    raw.seal(MessageTypes.VECTOR_SYNC, batch_bytes("mallory", "b", "first", {"n": 1}))  # seq 0
    second = raw.seal(MessageTypes.VECTOR_SYNC, batch_bytes("mallory", "b", "second", {"n": 2}))
    before = raw_rows(b.store)
    await raw.write(second)
    goodbye = await raw.expect(MessageTypes.DISCONNECT)
    assert goodbye["code"] == "bad-sequence" and "out of order" in goodbye["reason"]
    await raw.expect_closed()
    await raw.close()
    assert raw_rows(b.store) == before
    raw = await authenticated(b)  # in order, on a new connection
    await raw.write(raw.seal(MessageTypes.VECTOR_SYNC, batch_bytes("mallory", "b", "first", {})))
    await raw.write(raw.seal(MessageTypes.VECTOR_SYNC, batch_bytes("mallory", "b", "second", {})))
    assert (await raw.expect(MessageTypes.ACK))["batch_id"] == "raw-first"
    assert (await raw.expect(MessageTypes.ACK))["batch_id"] == "raw-second"
    await raw.close()
    await serves_honest_peer(a, b)


async def test_frames_before_the_handshake_are_refused(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    before = raw_rows(b.store)
    raw = await RawPeer.connect(b.mesh.port)
    await raw.send_plain(MessageTypes.VECTOR_SYNC, batch_bytes("mallory", "b", "sneak", {}))
    header, payload = await raw.read_plain()
    assert header.msg_type is MessageTypes.NACK
    assert b'"code": "handshake-required"' in payload
    assert await raw.reader.read() == b""
    await raw.close()

    raw = await RawPeer.connect(b.mesh.port)  # not even a v2 header
    await raw.write(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n" + bytes(16))
    assert await raw.reader.read() == b""
    await raw.close()

    assert refused(b, "handshake-required", peer=None) == 1
    assert refused(b, "bad-magic", peer=None) == 1
    assert "handshake-required" in caplog.text
    assert raw_rows(b.store) == before
    await serves_honest_peer(a, b)


async def test_oversized_frames_are_refused(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    before = raw_rows(b.store)
    # Before the handshake, a HANDSHAKE frame is at most 4 KiB.
    raw = await RawPeer.connect(b.mesh.port)
    await raw.write(raw_header(MessageTypes.HANDSHAKE, 10 << 20) + bytes(1024))
    assert await raw.reader.read() == b""
    await raw.close()
    assert refused(b, "frame-too-large", peer=None) == 1

    # After it, max_frame_bytes: refused from the (authentic) header alone, before buffering the
    # payload.
    raw = await authenticated(b)
    assert raw.session is not None
    sealed = raw.session.seal(raw_header(MessageTypes.VECTOR_SYNC, LIMIT + 1))
    await raw.write(sealed[: 32 + HEADER_SEAL_BYTES] + bytes(4096))
    goodbye = await raw.expect(MessageTypes.DISCONNECT)
    assert goodbye["code"] == "frame-too-large"
    await raw.expect_closed()
    await raw.close()
    assert refused(b, "frame-too-large") == 1
    assert refused(b, "frame-too-large", peer=None) == 2
    assert "frame-too-large" in caplog.text
    assert raw_rows(b.store) == before
    await serves_honest_peer(a, b)


async def test_gzip_bomb_in_an_authentic_frame_is_refused(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    raw = await authenticated(b)
    before = raw_rows(b.store)
    bomb = gzip_bomb_batch("mallory", "b")
    assert len(bomb) < 64 * 1024  # ~25 MB of zeros once inflated
    await raw.write(raw.seal(MessageTypes.VECTOR_SYNC, bomb))
    nack = await raw.expect(MessageTypes.NACK)
    assert nack["code"] == "gzip-too-large"
    await raw.close()
    stats = b.mesh.stats()
    assert stats.peers["mallory"].traffic.nacks_sent == {"gzip-too-large": 1}
    assert stats.peers["mallory"].traffic.refused == {}  # the frame itself was authentic
    assert "gzip" in caplog.text
    assert raw_rows(b.store) == before
    await serves_honest_peer(a, b)


async def test_peer_that_keeps_faulting_is_disconnected(
    pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    """Authentic frames refused for what they say (here: a type memrepl does not speak) are
    answered with a NACK each; after max_faults of them the connection ends."""
    a, b = pair
    connects = b.mesh.stats().peers["a"].traffic.connects
    raw = await authenticated(b)
    assert raw.session is not None
    before = raw_rows(b.store)
    for _ in range(3):
        await raw.write(raw.session.seal(raw_header(0x0101, 2) + b"{}"))  # a v2 "psych" message
    codes = []
    while True:
        got = await raw.read_sealed()
        assert got is not None
        header, payload = got
        codes.append((header.msg_type, payload))
        if header.msg_type is MessageTypes.DISCONNECT:
            break
    assert b'"code": "too-many-faults"' in codes[-1][1]
    assert all(t is MessageTypes.NACK for t, _ in codes[:-1])
    await raw.expect_closed()
    await raw.close()
    assert refused(b, "unknown-msg-type") == 3
    assert "mallory" not in b.mesh.peers()
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    refusals = [m for m in warned if m.startswith("refused a frame from peer 'mallory'")]
    assert len(refusals) == 3, warned
    assert "disconnecting peer 'mallory': 3 refused frames on this connection" in warned
    assert raw_rows(b.store) == before
    # The honest peer's connection was never touched.
    assert b.mesh.stats().peers["a"].traffic.connects == connects
    await serves_honest_peer(a, b)


async def test_unknown_type_and_late_handshake_are_refused(pair: tuple[Node, Node]) -> None:
    a, b = pair
    raw = await authenticated(b)
    before = raw_rows(b.store)
    assert raw.session is not None
    await raw.write(raw.session.seal(raw_header(0x0101, 2) + b"{}"))  # a v2 "psych" message
    assert (await raw.expect(MessageTypes.NACK))["code"] == "unknown-msg-type"
    hello = Hello("mallory", SCHEMA, new_nonce()).encode()
    await raw.write(raw.seal(MessageTypes.HANDSHAKE, hello))
    assert (await raw.expect(MessageTypes.NACK))["code"] == "unexpected-handshake"
    await raw.close()
    assert refused(b, "unknown-msg-type") == 1 and refused(b, "unexpected-handshake") == 1
    assert raw_rows(b.store) == before
    await serves_honest_peer(a, b)


async def test_schema_mismatch_is_refused_with_a_reason(pair: tuple[Node, Node]) -> None:
    a, b = pair
    raw = await RawPeer.connect(b.mesh.port)
    refusal = await raw.handshake(KEY, "0001")
    assert refusal is not None and refusal.code == "schema-mismatch"
    assert "'0001'" in refusal.reason and repr(SCHEMA) in refusal.reason
    await raw.close()
    assert refused(b, "schema-mismatch", peer=None) == 1
    await serves_honest_peer(a, b)


async def test_silent_peer_is_disconnected(cluster: Cluster) -> None:
    config = TcpMeshConfig(heartbeat_interval_s=0.1, idle_timeout_s=0.5)
    b = await cluster.add("b", config=config)
    raw = await authenticated(b)
    goodbye = await raw.expect(MessageTypes.DISCONNECT)  # heartbeats from b are skipped
    assert goodbye["code"] == "idle-timeout"
    await raw.expect_closed()
    await raw.close()
    assert refused(b, "idle-timeout") == 1
    assert b.mesh.peers() == []


async def test_stalled_handshake_is_cut_off(cluster: Cluster) -> None:
    config = TcpMeshConfig(heartbeat_interval_s=0.1, idle_timeout_s=0.5, handshake_timeout_s=0.3)
    b = await cluster.add("b", config=config)
    raw = await RawPeer.connect(b.mesh.port)
    await raw.write(raw_header(MessageTypes.HANDSHAKE, 100) + b"{")  # and then nothing
    assert await raw.reader.read() == b""
    await raw.close()
    assert refused(b, "handshake-timeout", peer=None) == 1


# -- the shared-key handshake: nothing to guess offline, long keys, throttling -----------------


async def test_an_unauthenticated_dialler_gets_no_proof_from_the_listener(
    pair: tuple[Node, Node],
) -> None:
    """Regression: the listener used to send HMAC(K, ...) in its challenge, before the dialler
    proved anything, so one connection gave material to test guesses of the key offline."""
    a, b = pair
    raw = await RawPeer.connect(b.mesh.port)
    refusal = await raw.handshake(WRONG_KEY, SCHEMA)
    assert refusal is not None and refusal.code == "auth-failed"
    sent_to_stranger = [raw.challenge_payload, refusal.encode()]
    assert await raw.reader.read() == b""
    await raw.close()
    for payload in sent_to_stranger:
        assert b"proof" not in payload
        assert set(json.loads(payload)) <= {
            "type", "protocol", "auth", "node_id", "version", "schema", "nonce", "code", "reason"
        }  # fmt: skip
    # Only a dialler that proved the key first gets the listener's proof (and it verifies).
    honest = await RawPeer.connect(b.mesh.port, "honest")
    assert await honest.handshake(KEY, SCHEMA) is None
    await honest.close()
    await serves_honest_peer(a, b)


def test_short_keys_are_refused(tmp_path: Path) -> None:
    for short in (b"x" * 31, b"  " + b"x" * 31 + b"\n", b"0123456789abcdef"):
        with pytest.raises(ClusterKeyError, match="needs at least 32 random bytes") as caught:
            TcpMesh("a", short, schema_revision=SCHEMA)
        assert caught.value.minimum == 32 and caught.value.size < 32
        with pytest.raises(ClusterKeyError):
            MeshNode(tmp_path / "a.db", node_id="a", key=short)
        path = tmp_path / "short.key"
        path.write_bytes(short)
        with pytest.raises(ClusterKeyError, match=r"short\.key"):
            read_key_file(path)
    assert not (tmp_path / "a.db").exists()
    TcpMesh("a", b"x" * 32, schema_revision=SCHEMA)  # 32 is enough


async def test_a_key_file_and_the_api_agree_on_a_trailing_newline(
    cluster: Cluster, tmp_path: Path
) -> None:
    """``--key-file cluster.key`` and ``Node(key=open("cluster.key", "rb").read())`` are the same
    key: surrounding whitespace is stripped in both."""
    path = tmp_path / "cluster.key"
    path.write_text(secrets.token_hex(32) + "\n")
    from_api = await cluster.add("b", key=path.read_bytes())
    from_file = await cluster.add("a", key=read_key_file(path))
    assert path.read_bytes().endswith(b"\n") and not read_key_file(path).endswith(b"\n")
    cluster.dial(from_file, from_api)
    await cluster.connected(from_file, from_api)


async def test_failed_handshakes_are_throttled_per_address(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    config = TcpMeshConfig(auth_failures_allowed=3, auth_lockout_base_s=60, auth_lockout_cap_s=60)
    b = await cluster.add("b", config=config)
    attacker = "127.0.0.2"  # any 127.x.y.z is this machine: another source address
    for _ in range(3):
        raw = await RawPeer.connect(b.mesh.port, source=attacker)
        refusal = await raw.handshake(WRONG_KEY, SCHEMA)
        assert refusal is not None and refusal.code == "auth-failed"
        await raw.close()
    # Locked out now: refused before any handshake, even with the right key.
    raw = await RawPeer.connect(b.mesh.port, source=attacker)
    refusal = await raw.handshake(KEY, SCHEMA)
    assert refusal is not None and refusal.code == "throttled"
    assert "too many failed handshakes from 127.0.0.2" in refusal.reason
    await raw.close()
    stats = b.mesh.stats()
    assert stats.total.refused.get("auth-failed") == 3
    assert stats.total.refused.get("throttled") == 1
    assert stats.auth is not None and "throttled" in (stats.auth.last_refusal or "")
    assert "throttling 127.0.0.2" in caplog.text
    # Another address is not affected: an honest node connects and syncs.
    a = await cluster.add("a", config=config)
    cluster.dial(a, b)
    await cluster.connected(a, b)
    await serves_honest_peer(a, b)
