"""Every batch this node sends is made here: :class:`BatchBuilder`.

A sync round's deltas and probes, a snapshot's marked batches, the REPLICATE request, the URGENT
push of the node's scheduler and anti-entropy's repair batches all come from one builder, so the
rules every outgoing batch follows are written once:

- **Ids.** A batch id is 16 random hex characters (repair batches: ``ae-`` and 13), so an ACK or
  NACK settles exactly the batch it names (memrepl.sync.awaiting).
- **Flags** say what the batch is: a delta ``DELTA_ONLY | REQUIRES_ACK``; a snapshot batch, a
  probe and a REPLICATE request ``REQUIRES_ACK``; a repair batch ``REQUIRES_ACK |
  CONFLICT_RESOLUTION``.
- **Cursors.** Only a delta or snapshot batch read from the change stream carries a cursor (the
  highest local change it covers, :class:`~memrepl.sync.batches.Delta`): the URGENT push and
  repair batches carry none, so they can never move anyone's position (memrepl.node.scheduler,
  memrepl.sync.antientropy).
- **Size.** Items are cut into batches of at most ``max_batch_items``; packing gzips items data
  over ``compress_threshold`` bytes (PROTOCOL.md §3).

The builder is pure: it reads no store and no clock but the batch's creation time (and the
REPLICATE request's stamp), so the round's state machine (memrepl.sync.rounds) uses it as is.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from memrepl.protocol.batch import MemorySyncBatch, SnapshotMark
from memrepl.protocol.enums import MemoryTier, SyncFlags, SyncOperation
from memrepl.protocol.item import MemorySyncItem
from memrepl.sync.batches import Delta

__all__ = ["REPAIR_BATCH_PREFIX", "REPLICATE_ITEM_ID", "BatchBuilder", "new_batch_id"]

#: The item id of a REPLICATE request (the request names a tier, not an item).
REPLICATE_ITEM_ID = "*"
#: The prefix of anti-entropy's repair batches' ids (their conflicts are one query away).
REPAIR_BATCH_PREFIX = "ae-"

_DELTA_FLAGS = SyncFlags.DELTA_ONLY | SyncFlags.REQUIRES_ACK
_REPAIR_FLAGS = SyncFlags.REQUIRES_ACK | SyncFlags.CONFLICT_RESOLUTION


def new_batch_id() -> str:
    """16 random hex characters."""
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True, slots=True)
class BatchBuilder:
    """Makes the batches ``node_id`` sends (see the module docstring)."""

    node_id: str
    max_batch_items: int = 100
    compress_threshold: int = 1024
    #: Where batch ids come from (tests give a counter).
    new_id: Callable[[], str] = field(default=new_batch_id, compare=False)

    def delta(
        self,
        tier: MemoryTier,
        target: str,
        delta: Delta,
        *,
        sync_vector: Mapping[str, int] | None = None,
        snapshot: SnapshotMark | None = None,
        purge_horizon: int | None = None,
        whole_state: bool = False,
        pending: int | None = None,
    ) -> MemorySyncBatch:
        """A batch of the change stream: ``delta``'s items and cursor. ``whole_state``: read
        from the tier's whole state (REPLICATE); ``snapshot`` marks a snapshot's batches (its
        final one carries the purge horizon); ``pending``: the items the round has left to send
        after this batch, as far as it knows (announced to the receiver)."""
        whole = whole_state or snapshot is not None
        return MemorySyncBatch(
            batch_id=self.new_id(),
            source_node=self.node_id,
            target_node=target,
            tier=tier,
            items=delta.items,
            flags=SyncFlags.REQUIRES_ACK if whole else _DELTA_FLAGS,
            sync_vector=sync_vector or {},
            cursor=delta.cursor,
            snapshot=snapshot,
            purge_horizon=purge_horizon,
            pending=pending,
        )

    def probe(
        self,
        tier: MemoryTier,
        target: str,
        *,
        purge_horizon: int | None = None,
        snapshot: SnapshotMark | None = None,
    ) -> MemorySyncBatch:
        """An empty batch: a round's probe, whose ACK reports the peer's inbound cursor
        (``purge_horizon``: this node's, so that a peer below it asks for a snapshot), or the
        opening batch of a snapshot (``snapshot``)."""
        return MemorySyncBatch(
            batch_id=self.new_id(),
            source_node=self.node_id,
            target_node=target,
            tier=tier,
            items=(),
            flags=SyncFlags.REQUIRES_ACK,
            snapshot=snapshot,
            purge_horizon=purge_horizon,
        )

    def replicate_request(self, tier: MemoryTier, target: str) -> MemorySyncBatch:
        """A REPLICATE request: one REPLICATE item naming the tier; its batch id is the id of
        the snapshot it asks for (memrepl.sync.snapshots)."""
        request = MemorySyncItem(
            item_id=REPLICATE_ITEM_ID,
            timestamp_ns=time.time_ns(),
            tier=tier,
            operation=SyncOperation.REPLICATE,
        )
        return MemorySyncBatch(
            batch_id=self.new_id(),
            source_node=self.node_id,
            target_node=target,
            tier=tier,
            items=(request,),
            flags=SyncFlags.REQUIRES_ACK,
        )

    def items(
        self,
        tier: MemoryTier,
        target: str,
        items: Sequence[MemorySyncItem],
        *,
        repair: bool = False,
    ) -> list[MemorySyncBatch]:
        """``items`` as batches without a cursor, ``max_batch_items`` each: the URGENT push, or
        (``repair``) anti-entropy's repair batches."""
        size = self.max_batch_items
        return [
            MemorySyncBatch(
                batch_id=(REPAIR_BATCH_PREFIX + self.new_id()[:13]) if repair else self.new_id(),
                source_node=self.node_id,
                target_node=target,
                tier=tier,
                items=items[start : start + size],
                flags=_REPAIR_FLAGS if repair else _DELTA_FLAGS,
            )
            for start in range(0, len(items), size)
        ]

    def pack(self, batch: MemorySyncBatch) -> bytes:
        """The batch as sent: one MEMORY_SYNC message (PROTOCOL.md §3)."""
        return batch.pack(compress_threshold=self.compress_threshold)
