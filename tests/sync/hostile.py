"""A hand-driven peer on a LocalMesh, for the tests of what a peer's input can do to a node.

:class:`RawPeer` is an endpoint with no manager behind it: it sends whatever batch a test builds
and records every message the node under test sends it (ACKs, NACKs, its own batches). With
``auto_ack`` it acknowledges the node's batches honestly (the cursor it was sent), as a peer that
answers rounds would.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from memrepl.mesh import LocalMesh
from memrepl.protocol.batch import MemorySyncBatch, SnapshotMark
from memrepl.protocol.enums import MemoryTier, MessageTypes, SyncOperation
from memrepl.protocol.item import MemorySyncItem
from memrepl.sync.messages import Ack


class RawPeer:
    """One LocalMesh endpoint driven by a test (see the module docstring)."""

    def __init__(self, hub: LocalMesh, node_id: str = "mallory", *, auto_ack: bool = False):
        self.node_id = node_id
        self.endpoint = hub.endpoint(node_id)
        self.auto_ack = auto_ack
        #: (message type, data) of everything received, in order.
        self.received: list[tuple[MessageTypes, bytes]] = []
        #: Per peer and tier, the highest cursor acknowledged (what an honest peer reports).
        self.inbound: dict[tuple[str, int], int] = {}
        for msg_type in (MessageTypes.VECTOR_SYNC, MessageTypes.ACK, MessageTypes.NACK):
            self.endpoint.register_handler(msg_type, self._handler(msg_type))

    def _handler(self, msg_type: MessageTypes) -> Any:
        def handle(data: bytes, peer_id: str) -> None:
            self.received.append((msg_type, data))
            if msg_type is MessageTypes.VECTOR_SYNC and self.auto_ack:
                batch = MemorySyncBatch.unpack(data)
                key = (peer_id, int(batch.tier))
                if batch.cursor is not None:
                    self.inbound[key] = max(self.inbound.get(key, 0), batch.cursor)
                self.ack(peer_id, batch.batch_id, batch.tier, self.inbound.get(key, 0))

        return handle

    def send(self, peer_id: str, batch: MemorySyncBatch) -> None:
        self.endpoint.send(peer_id, MessageTypes.VECTOR_SYNC, batch.pack())

    def ack(self, peer_id: str, batch_id: str, tier: int, cursor: int) -> None:
        self.endpoint.send(
            peer_id, MessageTypes.ACK, Ack(batch_id, int(tier), cursor, 0, 0).encode()
        )

    def answers(self) -> list[tuple[str, dict[str, Any]]]:
        """The ACKs and NACKs received: ``("ACK"|"NACK", decoded JSON)``."""
        return [
            (msg_type.name, json.loads(data))
            for msg_type, data in self.received
            if msg_type in (MessageTypes.ACK, MessageTypes.NACK)
        ]

    def batches(self) -> list[MemorySyncBatch]:
        """The batches received (the node's probes, requests and data)."""
        return [
            MemorySyncBatch.unpack(data)
            for msg_type, data in self.received
            if msg_type is MessageTypes.VECTOR_SYNC
        ]


def batch(
    source: str,
    target: str,
    *,
    tier: MemoryTier = MemoryTier.WORKING,
    items: list[MemorySyncItem] | None = None,
    **fields: Any,
) -> MemorySyncBatch:
    """A batch built by hand (any extension field through ``fields``)."""
    return MemorySyncBatch(
        batch_id=fields.pop("batch_id", f"hand-{time.monotonic_ns()}"),
        source_node=source,
        target_node=target,
        tier=tier,
        items=items or [],
        **fields,
    )


def replicate_item(tier: MemoryTier = MemoryTier.WORKING) -> MemorySyncItem:
    return MemorySyncItem(
        item_id="*", timestamp_ns=time.time_ns(), tier=tier, operation=SyncOperation.REPLICATE
    )


def v2_insert(
    item_id: str,
    content: dict[str, Any],
    stamp: int | None = None,
    *,
    tier: MemoryTier = MemoryTier.WORKING,
) -> MemorySyncItem:
    """A plain v2 INSERT: read as a write by the batch's source node."""
    return MemorySyncItem(
        item_id=item_id,
        timestamp_ns=time.time_ns() if stamp is None else stamp,
        tier=tier,
        operation=SyncOperation.INSERT,
        payload=json.dumps(content).encode(),
    )


def empty_snapshot(
    source: str, target: str, snapshot_id: str, *, horizon: int, tier: MemoryTier
) -> list[MemorySyncBatch]:
    """The two batches of an empty snapshot: the opening mark, then the final one."""
    mark = SnapshotMark(snapshot_id)
    opening = batch(source, target, tier=tier, snapshot=mark)
    final = batch(
        source,
        target,
        tier=tier,
        snapshot=dataclasses.replace(mark, final=True),
        cursor=horizon,
        purge_horizon=horizon,
    )
    return [opening, final]
