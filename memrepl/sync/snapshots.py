"""Finishing a snapshot: forgetting what the sender no longer holds.

A snapshot (REPLICATE) brings a peer everything the sender holds, live items and kept
tombstones. Tombstones the sender already collected cannot travel any more, so a receiver that
missed them would keep -- and later spread back -- items that were deleted everywhere else. When
the final batch of a snapshot arrives, the receiver therefore forgets every item that was not in
the snapshot although the sender had seen it: its state came from that sender
(``received_from``), or it was changed here no later than what the sender had acknowledged
when the snapshot began (the receiver's sync vector entry for the sender, read at the opening
batch: a change acknowledged during the snapshot may be absent from batches read before it).
Items the sender has never seen are kept, and flow to it as ordinary deltas.

The ids of a snapshot are collected in memory as its batches arrive; if the receiver restarts in
the middle, the final batch finds no collection and nothing is forgotten (the deletes may then
come back; the next snapshot repairs it).
"""

from __future__ import annotations

from collections.abc import Set

from sqlalchemy import or_, select
from sqlalchemy.engine import Connection

from memrepl.storage.items import forget_items
from memrepl.storage.schema import TierSpec


def forget_missing(
    conn: Connection, spec: TierSpec, sender: str, present: Set[str], acked: int
) -> list[str]:
    """Forget (delete without tombstone) items the sender had seen but no longer holds.

    ``acked`` is the local cursor the sender had acknowledged when the snapshot BEGAN: a local
    change acknowledged during the snapshot may be missing from batches read before it.
    """
    table = spec.table
    seen_by_sender = conn.execute(
        select(table.c.item_id).where(
            or_(table.c.modified_at <= acked, table.c.received_from == sender)
        )
    ).scalars()
    doomed = [item_id for item_id in seen_by_sender if item_id not in present]
    forget_items(conn, spec, doomed)
    return doomed
