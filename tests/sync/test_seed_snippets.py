"""The seed document's snippets, run as written (with memrepl imports)."""

from __future__ import annotations

import json
import time

import memrepl
from memrepl import (
    MemorySyncBatch,
    MemorySyncItem,
    MemorySyncManager,
    MemoryTier,
    MessageTypes,
    SyncOperation,
    SyncPriority,
)
from memrepl.mesh import LocalMesh

from ..conftest import Locator


async def test_sync_manager_snippet(locate: Locator) -> None:
    hub = LocalMesh()
    mesh_instance = hub.endpoint("node-001")
    peer_store = memrepl.open(locate("b"), node_id="node-002")
    peer = MemorySyncManager(node_id="node-002", mesh=hub.endpoint("node-002"))
    for tier in MemoryTier:
        peer.register_memory_tier(tier, peer_store.tier(tier))
    store = memrepl.open(locate("a"), node_id="node-001")
    working_memory, episodic_memory, semantic_memory = (
        store.working,
        store.episodic,
        store.semantic,
    )
    working_memory.add("wm-1", {"data": "value"})
    last_sync_timestamp = 0

    # --- the seed's "Sync Manager" section, verbatim ---
    sync_manager = MemorySyncManager(node_id="node-001", mesh=mesh_instance)

    # Register memory tiers
    sync_manager.register_memory_tier(MemoryTier.WORKING, working_memory)
    sync_manager.register_memory_tier(MemoryTier.EPISODIC, episodic_memory)
    sync_manager.register_memory_tier(MemoryTier.SEMANTIC, semantic_memory)

    # Create delta batch
    batch = sync_manager.create_delta_batch(
        tier=MemoryTier.WORKING, target_node="node-002", since_timestamp=last_sync_timestamp
    )

    # Apply received batch
    applied, conflicts = peer.apply_sync_batch(batch)

    # Sync with peer
    result = await sync_manager.sync_with_peer("node-002", MemoryTier.WORKING)
    # --- end ---

    assert (applied, conflicts) == (1, 0)
    assert result.ok
    assert peer_store.working.get_by_id("wm-1")["content"] == {"data": "value"}  # type: ignore[index]

    # --- "Delta Sync" ---
    memory_tier = working_memory
    last_sync_timestamp_ns = 0
    modified = memory_tier.get_modified_since(last_sync_timestamp_ns)
    batch = sync_manager.create_delta_batch(
        tier=MemoryTier.WORKING, target_node="peer-node", since_timestamp=last_sync_timestamp_ns
    )
    assert [m["item_id"] for m in modified] == [i.item_id for i in batch.items] == ["wm-1"]

    # --- "Sync Vectors" ---
    sync_vector = sync_manager.get_sync_vector(MemoryTier.WORKING)
    assert set(sync_vector) == {"node-002"}
    sync_manager.update_sync_vector(
        tier=MemoryTier.WORKING, node_id="node-002", timestamp=1234567890
    )
    assert sync_manager.get_sync_vector(MemoryTier.WORKING) == {"node-002": 1234567890}

    # --- "Integration with Mesh Network": the seed's handle_sync over the mesh ---
    working_memory.add("wm-2", {"data": "second"})

    def handle_sync(data: bytes, peer_id: str) -> None:
        batch = MemorySyncBatch.unpack(data)
        applied, conflicts = peer.apply_sync_batch(batch)
        received.append((peer_id, applied, conflicts))

    received: list[tuple[str, int, int]] = []
    hub.endpoint("node-002").register_handler(MessageTypes.VECTOR_SYNC, handle_sync)
    batch = sync_manager.create_delta_batch(tier=MemoryTier.WORKING, target_node="node-002")
    mesh_instance.send("node-002", MessageTypes.VECTOR_SYNC, batch.pack())
    await hub.settle()
    assert received == [("node-001", 1, 0)]
    store.close()
    peer_store.close()


def test_testing_snippet() -> None:
    item = MemorySyncItem(
        item_id="32-char-hex-id",
        timestamp_ns=int(time.time() * 1e9),
        tier=MemoryTier.WORKING,
        operation=SyncOperation.INSERT,
        priority=SyncPriority.NORMAL,
        payload=json.dumps({"data": "value"}).encode(),
    )
    packed = item.pack()
    unpacked, _ = MemorySyncItem.unpack(packed)
    assert unpacked == item

    batch = MemorySyncBatch(
        batch_id="batch-001",
        source_node="node-a",
        target_node="node-b",
        tier=MemoryTier.WORKING,
        items=[item],
    )
    packed_batch = batch.pack()
    unpacked_batch = MemorySyncBatch.unpack(packed_batch)
    assert list(unpacked_batch.items) == [item]
    assert unpacked_batch.batch_id == "batch-001"
    assert json.loads(unpacked_batch.items[0].payload) == {"data": "value"}
    # The seed's batch has no creation time argument: it is stamped when built.
    assert batch.created_ns is not None and abs(batch.created_ns - time.time_ns()) < 60 * 10**9
