"""Nodes with real stores and sync managers converge over TcpMesh, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json

import pytest

from memrepl.errors import MeshError, PeerUnavailableError
from memrepl.mesh import TcpMesh
from memrepl.mesh.config import TcpMeshConfig
from memrepl.protocol.enums import MemoryTier, MessageTypes, SyncPriority
from memrepl.storage.migrate import HEAD_REVISION, REPLICATION_REVISION

from ..replicas import replicated, replicated_store
from .conftest import FAST, KEY, SCHEMA, Cluster, Node, eventually


def write_everywhere(node: Node, count: int = 5) -> None:
    """Distinct items on every tier of ``node``, and one shared id written by every node."""
    for tier in MemoryTier:
        memory = node.store.tier(tier)
        for i in range(count):
            memory.add(f"{node.node_id}-{tier.name.lower()}-{i}", {"n": i, "by": node.node_id})
        memory.merge("shared", {node.node_id: True})


async def sync_all(nodes: list[Node]) -> None:
    for sender in nodes:
        for receiver in nodes:
            if sender is not receiver:
                for tier in MemoryTier:
                    result = await sender.manager.sync_with_peer(receiver.node_id, tier)
                    assert result.ok, result


async def test_two_nodes_sync_every_tier(cluster: Cluster) -> None:
    a = await cluster.add("a")
    b = await cluster.add("b")
    cluster.dial(a, b)
    await cluster.connected(a, b)
    write_everywhere(a, count=150)  # two batches per tier
    write_everywhere(b)
    await sync_all([a, b])
    assert replicated_store(a.store) == replicated_store(b.store)
    assert len(replicated(b.store, MemoryTier.WORKING)) == 150 + 5 + 1
    stats = a.mesh.stats()
    assert stats.peers["b"].connected
    assert stats.peers["b"].traffic.frames_out > 0
    assert stats.peers["b"].unacked == 0
    assert stats.total.refused == {}


async def test_three_nodes_converge(cluster: Cluster) -> None:
    a, b, c = [await cluster.add(name) for name in ("a", "b", "c")]
    # Every node dials every other: the duplicate rule leaves one connection per pair.
    for x in (a, b, c):
        for y in (a, b, c):
            if x is not y:
                cluster.dial(x, y)
    for x, y in ((a, b), (a, c), (b, c)):
        await cluster.connected(x, y)
    for node in (a, b, c):
        write_everywhere(node)
    await sync_all([a, b, c])
    await sync_all([a, b, c])  # items learnt from one peer flow on to the third
    state = replicated_store(a.store)
    assert state == replicated_store(b.store) == replicated_store(c.store)
    (shared,) = [row for row in state[MemoryTier.SEMANTIC] if row[0] == "shared"]
    assert json.loads(shared[4]) == {"a": True, "b": True, "c": True}


async def test_both_dial_keeps_the_connection_of_the_smaller_id(cluster: Cluster) -> None:
    a = await cluster.add("a")
    b = await cluster.add("b")
    cluster.dial(a, b)
    cluster.dial(b, a)
    await cluster.connected(a, b)
    await asyncio.sleep(0.5)  # both dials are done; nothing flaps
    for node, other in ((a, "b"), (b, "a")):
        assert node.mesh.peers() == [other]
        assert node.mesh.stats().peers[other].dialled_by == "a"
    connects = a.mesh.stats().peers["b"].traffic.connects
    await asyncio.sleep(0.5)
    assert a.mesh.stats().peers["b"].traffic.connects == connects
    write_everywhere(b)
    await sync_all([a, b])
    assert replicated_store(a.store) == replicated_store(b.store)


async def test_send_to_unknown_or_long_gone_peer_raises(cluster: Cluster) -> None:
    config = TcpMeshConfig(
        heartbeat_interval_s=0.5, idle_timeout_s=5.0, queue_while_down_s=0.3, reconnect_cap_s=0.2
    )
    a = await cluster.add("a", config=config)
    with pytest.raises(PeerUnavailableError):
        a.mesh.send("nobody", MessageTypes.VECTOR_SYNC, b"x")
    with pytest.raises(MeshError):
        a.mesh.send("nobody", MessageTypes.HANDSHAKE, b"x")
    # A known peer that is not up yet: queued for queue_while_down_s, then refused.
    a.mesh.add_peer("ghost", "127.0.0.1", 9)  # the discard port: nothing listens
    a.mesh.send("ghost", MessageTypes.MEMORY_STORE, b"queued")
    assert a.mesh.stats().peers["ghost"].queued_frames == 1
    await asyncio.sleep(0.4)
    with pytest.raises(PeerUnavailableError):
        a.mesh.send("ghost", MessageTypes.MEMORY_STORE, b"late")
    assert a.mesh.stats().peers["ghost"].queued_frames == 0
    # The sync manager reports it as unreachable, at once.
    result = await a.manager.sync_with_peer("ghost", MemoryTier.WORKING)
    assert result.status == "unreachable"


async def test_reconnect_after_the_peer_restarts(cluster: Cluster) -> None:
    a = await cluster.add("a")
    b = await cluster.add("b")
    cluster.dial(a, b)
    await cluster.connected(a, b)
    a.store.working.add("before", {"v": 1})
    assert (await a.manager.sync_with_peer("b", MemoryTier.WORKING)).ok

    # b goes down; a write on a cannot reach it.
    port = b.mesh.port
    await cluster.stop_mesh("b")
    await eventually(lambda: a.mesh.peers() == [])
    a.store.working.add("while-down", {"v": 2})

    # b comes back on the same port with the same store; a redials and the sync resumes.
    b = await cluster.add("b", port=port, store=b.store)
    await cluster.connected(a, b)
    result = await a.manager.sync_with_peer("b", MemoryTier.WORKING)
    assert result.ok and result.items == 1
    assert replicated(b.store, MemoryTier.WORKING) == replicated(a.store, MemoryTier.WORKING)
    assert a.mesh.stats().peers["b"].traffic.connects == 2

    # b moves to another port: a learns the new address and follows.
    await cluster.stop_mesh("b")
    b = await cluster.add("b", store=b.store)
    a.mesh.add_peer("b", "127.0.0.1", b.mesh.port)
    await cluster.connected(a, b)
    a.store.working.add("after-move", {"v": 3})
    assert (await a.manager.sync_with_peer("b", MemoryTier.WORKING)).ok
    assert "after-move" in {row[0] for row in replicated(b.store, MemoryTier.WORKING)}


async def test_frames_queued_while_reconnecting_are_delivered(cluster: Cluster) -> None:
    b = await cluster.add("b")
    port = b.mesh.port
    await cluster.stop_mesh("b")
    a = await cluster.add("a")
    a.mesh.add_peer("b", "127.0.0.1", port)
    a.store.working.add("x", {"v": 1})
    sync = asyncio.create_task(a.manager.sync_with_peer("b", MemoryTier.WORKING))
    await asyncio.sleep(0.3)  # a's probe batch waits in the outbox; b is still down
    b = await cluster.add("b", port=port, store=b.store)
    result = await sync
    assert result.ok and result.items == 1


async def test_backpressure_bounds_unacknowledged_batches(cluster: Cluster) -> None:
    config = TcpMeshConfig(heartbeat_interval_s=0.5, idle_timeout_s=5.0, max_unacked_batches=3)
    a = await cluster.add("a", config=config)
    b = await cluster.add("b")
    received: list[bytes] = []
    b.mesh.register_handler(MessageTypes.VECTOR_SYNC, lambda data, peer: received.append(data))
    cluster.dial(a, b)
    await cluster.connected(a, b)
    for i in range(10):
        a.mesh.send("b", MessageTypes.VECTOR_SYNC, b"batch %d" % i)
    await eventually(lambda: len(received) == 3)
    await asyncio.sleep(0.2)
    assert len(received) == 3
    peer = a.mesh.stats().peers["b"]
    assert (peer.unacked, peer.queued_frames) == (3, 7)
    for _ in range(2):
        b.mesh.send("a", MessageTypes.ACK, b'{"batch_id": "?"}')
    await eventually(lambda: len(received) == 5)
    await asyncio.sleep(0.2)
    assert received == [b"batch %d" % i for i in range(5)]


async def test_urgent_batch_overtakes_queued_background_batches(cluster: Cluster) -> None:
    config = TcpMeshConfig(heartbeat_interval_s=0.5, idle_timeout_s=5.0, max_unacked_batches=1)
    a = await cluster.add("a", config=config)
    b = await cluster.add("b")
    received: list[str] = []
    b.mesh.register_handler(
        MessageTypes.VECTOR_SYNC, lambda data, peer: received.append(data[32:].decode())
    )
    cluster.dial(a, b)
    await cluster.connected(a, b)

    def batch(name: str, priority: SyncPriority) -> bytes:
        from .rawpeer import raw_header

        header_priority = {SyncPriority.NORMAL: 1, SyncPriority.URGENT: 3, SyncPriority.LOW: 0}
        return raw_header(0x0304, len(name), header_priority[priority]) + name.encode()

    a.mesh.send("b", MessageTypes.VECTOR_SYNC, batch("n1", SyncPriority.NORMAL))
    await eventually(lambda: received == ["n1"])
    # The window (1) is full: these wait in a's outbox, in priority order.
    a.mesh.send("b", MessageTypes.VECTOR_SYNC, batch("n2", SyncPriority.NORMAL))
    a.mesh.send("b", MessageTypes.VECTOR_SYNC, batch("l3", SyncPriority.LOW))
    a.mesh.send("b", MessageTypes.VECTOR_SYNC, batch("u4", SyncPriority.URGENT))
    for expected in (["n1", "u4"], ["n1", "u4", "n2"], ["n1", "u4", "n2", "l3"]):
        b.mesh.send("a", MessageTypes.ACK, b"{}")
        await eventually(lambda expected=expected: received == expected)  # type: ignore[misc]


async def test_schema_mismatch_never_connects(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    a = await cluster.add("a")
    b = await cluster.add("b", schema="9999-from-the-future")
    cluster.dial(a, b)
    await eventually(lambda: a.mesh.stats().total.refused.get("schema-mismatch", 0) >= 1)
    assert a.mesh.peers() == [] and b.mesh.peers() == []
    assert "replication revision" in caplog.text


async def test_a_node_before_the_replication_revision_is_refused(cluster: Cluster) -> None:
    """Migration 0009 changes replication (filing options travel and merge with items, as
    0005's namespaces do; 0008's snapshots the receiver asks for did too): a node still
    advertising replication revision "0008" is refused until it is upgraded, instead of syncing
    and dropping what it relays."""
    assert REPLICATION_REVISION == SCHEMA == "0009"
    a = await cluster.add("a")
    b = await cluster.add("b", schema="0008")
    cluster.dial(a, b)
    await eventually(lambda: a.mesh.stats().total.refused.get("schema-mismatch", 0) >= 1)
    assert a.mesh.peers() == [] and b.mesh.peers() == []


@pytest.mark.skipif(
    HEAD_REVISION == REPLICATION_REVISION,
    reason="no storage-only migration after the replication revision",
)
async def test_a_storage_only_migration_is_a_rolling_upgrade(cluster: Cluster) -> None:
    """A node at head advertises its replication revision, not its head: one still at that
    revision (before the later, storage-only migrations: the search indexes) syncs with it."""
    assert HEAD_REVISION != REPLICATION_REVISION and SCHEMA == REPLICATION_REVISION
    a = await cluster.add("a")
    b = await cluster.add("b", schema=REPLICATION_REVISION)
    cluster.dial(a, b)
    await cluster.connected(a, b)
    write_everywhere(a)
    write_everywhere(b)
    await sync_all([a, b])
    assert replicated_store(a.store) == replicated_store(b.store)
    assert a.mesh.stats().total.refused == {} and b.mesh.stats().total.refused == {}


async def test_mesh_can_be_used_as_async_context_manager() -> None:
    async with TcpMesh("solo", KEY, schema_revision=SCHEMA, config=FAST) as mesh:
        assert mesh.port > 0
        assert mesh.peers() == []
    with pytest.raises(PeerUnavailableError):
        mesh.send("solo-2", MessageTypes.ACK, b"{}")


async def test_handlers_sync_async_and_failing(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    a = await cluster.add("a")
    b = await cluster.add("b")
    got: list[tuple[bytes, str]] = []
    started = asyncio.Event()

    def failing(data: bytes, peer_id: str) -> None:
        raise RuntimeError("handler bug")

    async def forever(data: bytes, peer_id: str) -> None:
        got.append((data, peer_id))
        started.set()
        await asyncio.Event().wait()  # cancelled when b's mesh closes

    b.mesh.register_handler(MessageTypes.MEMORY_QUERY, failing)
    b.mesh.register_handler(MessageTypes.MEMORY_STORE, forever)
    cluster.dial(a, b)
    await cluster.connected(a, b)
    a.mesh.send("b", MessageTypes.MEMORY_QUERY, b"boom")
    a.mesh.send("b", MessageTypes.MEMORY_STORE, b"stay")
    a.mesh.send("b", MessageTypes.MEMORY_SYNC, b"nobody listens")
    await asyncio.wait_for(started.wait(), 5)
    assert got == [(b"stay", "a")]
    assert "handler bug" in caplog.text and "no handler for MEMORY_SYNC" in caplog.text
    assert b.mesh.peers() == ["a"]  # the connection carried on
    await b.mesh.close()  # cancels and awaits the pending coroutine handler
