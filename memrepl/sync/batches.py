"""Building outgoing batches and applying incoming ones, as functions over a Connection.

Outgoing (:func:`read_delta`): the changes after a cursor, in ``modified_at`` order, cut at
``max_items``, leaving out rows whose state came as is from the target (no echo). The batch's
cursor is the highest local ``modified_at`` it covers, including skipped echo rows, so an
acknowledged prefix is always a valid place to resume (ARCHITECTURE.md, "Deltas, cursors and
sync vectors").

Incoming (:func:`apply_batch`): the whole batch in the caller's ONE write transaction: every
item merged by the merge core, the concurrent pairs logged, the clock moved past the incoming
stamps, and the sender's cursor stored. Validation happens first (:func:`check_cursors`,
:func:`decode_batch`), so a refused batch writes nothing.

A cursor is a stamp of the sender's clock (its ``modified_at``), so it is checked like one, once
per batch: above ``2**63 - 1`` no stamp can be (SQLite integers are signed: ``bad-cursor``), and
further ahead of the local wall clock than the skew tolerance it cannot be right -- every stamp a
node's clock reaches was either its own wall time or a stamp it accepted under the same
tolerance, so the sender's clock is ahead (``clock-skew``, like a skewed item stamp). A cursor
that passed would stick: stored as the sender's inbound cursor, it is where every later round
from that sender resumes (ARCHITECTURE.md, "Deltas, cursors and sync vectors").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from memrepl.clock import MAX_TIMESTAMP_NS, HybridLogicalClock, WallClock
from memrepl.errors import BadCursorError, ClockSkewError, ProtocolError
from memrepl.merge import Outcome
from memrepl.protocol.batch import MemorySyncBatch
from memrepl.protocol.enums import MemoryTier, SyncOperation
from memrepl.protocol.item import MemorySyncItem
from memrepl.storage.items import RemoteItem, apply_remote_states, max_modified_at, modified_since
from memrepl.storage.records import StoredItem
from memrepl.storage.schema import TierSpec
from memrepl.sync.conflicts import DetectedConflict, record_conflicts
from memrepl.sync.tombstones import purged_through
from memrepl.sync.vectors import advance_applied_cursor, applied_cursor
from memrepl.sync.wire import decode_item, item_from_state


@dataclass(frozen=True, slots=True)
class Delta:
    """A slice of a tier's change stream: the items to send and the cursor they reach."""

    items: list[MemorySyncItem]
    cursor: int


def read_delta(
    conn: Connection,
    spec: TierSpec,
    since: int,
    *,
    max_items: int,
    exclude_peer: str | None,
) -> Delta:
    """The next ``max_items`` changes after ``since`` (run in one read transaction)."""
    rows = modified_since(
        conn, spec, since, limit=max_items + 1, exclude_received_from=exclude_peer
    )
    if len(rows) > max_items:
        rows = rows[:max_items]
        cursor = rows[-1].modified_at
    else:
        # Everything up to the tier's latest change is covered, echo rows included -- and the
        # collected tombstones too, which may have been the latest changes.
        cursor = max(since, max_modified_at(conn, spec), purged_through(conn, spec.tier))
    return Delta([to_wire(spec.tier, row) for row in rows], cursor)


def to_wire(tier: MemoryTier, row: StoredItem) -> MemorySyncItem:
    payload = None if row.deleted else row.encoded_content().encode()
    return item_from_state(row.item_id, row.state, tier, row.priority, payload=payload)


def is_replicate_request(batch: MemorySyncBatch) -> bool:
    """A batch asking for the tier's full state: one item whose operation is REPLICATE."""
    replicate = SyncOperation.REPLICATE
    return any(item.operation == replicate for item in batch.items)


def check_replicate_request(batch: MemorySyncBatch) -> None:
    """Refuse a REPLICATE request that is not exactly one REPLICATE item of the batch's tier,
    without a cursor, snapshot mark or purge horizon (ProtocolError ``bad-replicate-request``)."""
    items = batch.items
    if (
        len(items) != 1
        or items[0].operation != SyncOperation.REPLICATE
        or items[0].tier != batch.tier
        or batch.cursor is not None
        or batch.snapshot is not None
        or batch.purge_horizon is not None
    ):
        raise ProtocolError(
            f"batch {batch.batch_id!r}: a REPLICATE request is one REPLICATE item of the "
            "batch's tier and nothing else",
            code="bad-replicate-request",
        )


def check_cursors(batch: MemorySyncBatch, wall: WallClock, max_skew_ns: int) -> None:
    """Refuse a batch whose cursor or purge horizon cannot be a stamp of its sender's clock; see
    the module docstring. Above ``2**63 - 1``: :class:`BadCursorError`; too far ahead of the
    wall clock: :class:`ClockSkewError` (the sender's clock is ahead, as for a skewed item
    stamp). Both messages name the value."""
    for what, stamp in (("cursor", batch.cursor), ("purge horizon", batch.purge_horizon)):
        if stamp is None:
            continue
        if stamp > MAX_TIMESTAMP_NS:
            raise BadCursorError(
                f"batch {batch.batch_id!r} from {batch.source_node!r}: {what} {stamp} is above "
                f"2**63 - 1, the largest stamp a clock can reach",
                cursor=stamp,
                limit=MAX_TIMESTAMP_NS,
            )
        now = wall()
        if stamp > now + max_skew_ns:
            raise ClockSkewError(
                f"batch {batch.batch_id!r} from {batch.source_node!r}: {what} {stamp} is "
                f"{(stamp - now) / 1e9:.3f} s ahead of the local wall clock (tolerance "
                f"{max_skew_ns / 1e9:g} s): it cannot be a stamp of the sender's clock",
                timestamp_ns=stamp,
                limit=now + max_skew_ns,
                ahead_ns=stamp - now,
            )


def decode_batch(batch: MemorySyncBatch) -> list[RemoteItem]:
    """The batch's items as states to merge; refuses the whole batch on the first fault.

    Raises :class:`ProtocolError` (an item of another tier, a malformed state). Stamps too far
    in the future are refused by :func:`~memrepl.storage.items.apply_remote_states`, before it
    writes anything.
    """
    remote: list[RemoteItem] = []
    for item in batch.items:
        if item.tier != batch.tier:
            raise ProtocolError(
                f"item {item.item_id!r} of tier {item.tier.name} in a {batch.tier.name} batch",
                code="tier-mismatch",
            )
        state, text = decode_item(item, source_node=batch.source_node)
        # The payload is the content's JSON text (checked by decode_item): kept, to store as is.
        remote.append(RemoteItem(item.item_id, state, item.priority, text))
    return remote


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one batch did."""

    applied: int
    conflicts: int
    cursor: int


def apply_batch(
    conn: Connection,
    spec: TierSpec,
    clock: HybridLogicalClock,
    batch: MemorySyncBatch,
    remote: Sequence[RemoteItem],
    *,
    cursor: int | None,
) -> Applied:
    """Apply decoded items with their bookkeeping, inside the caller's write transaction.

    ``cursor`` (checked by :func:`check_cursors`) moves the sender's inbound cursor; None leaves
    it (a batch without one, or a snapshot batch before the final one).
    """
    merged = apply_remote_states(conn, spec, clock, remote, from_peer=batch.source_node)
    verdicts = merged.verdicts
    conflicting = (Outcome.CONCURRENT, Outcome.DIVERGED)
    concurrent = [
        DetectedConflict(
            item.item_id,
            verdict,
            item.state,
            item.content_json,
            before.content_json if before is not None else None,
            _kept_text(before, after),
        )
        for item, verdict, before, after in zip(
            remote, verdicts, merged.before, merged.after, strict=True
        )
        if verdict.outcome in conflicting
    ]
    if concurrent:
        record_conflicts(
            conn,
            spec.tier,
            concurrent,
            peer_id=batch.source_node,
            batch_id=batch.batch_id,
            detected_at_ns=clock.tick(),
        )
    if cursor is not None:
        stored = advance_applied_cursor(conn, spec.tier, batch.source_node, cursor, clock.last_ns)
    else:
        stored = applied_cursor(conn, spec.tier, batch.source_node)
    applied = sum(verdict.changed for verdict in verdicts)
    return Applied(applied, len(concurrent), stored)


def _kept_text(before: StoredItem | None, after: StoredItem | None) -> str | None:
    """The text of the content a conflict kept: the row written, or the local row left as it
    was (a same-version conflict the local side won)."""
    if after is not None:
        return after.content_json
    return before.content_json if before is not None else None
