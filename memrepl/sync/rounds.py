"""One ``sync_with_peer`` round: the probe, then acknowledged batches until the peer is caught up.

The rule that keeps it right: a batch's cursor is recorded in the sync vector only after its ACK
(every :data:`ACK_SAVE_EVERY_BATCHES` batches and when the round ends), and the round starts from
the cursor the receiver itself reports (its durable inbound cursor), so nothing unacknowledged is
ever marked synced and nothing the receiver lacks is ever skipped. A
snapshot (REPLICATE) is the same loop from cursor 0 without the echo filter, every batch marked
with one snapshot id and closed by a final marked batch, after which the receiver forgets what
the sender no longer holds (memrepl.sync.snapshots).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from typing import TYPE_CHECKING

from memrepl.protocol.batch import MemorySyncBatch, SnapshotMark
from memrepl.storage.tiers import Tier
from memrepl.sync import tombstones, vectors
from memrepl.sync.messages import Ack, Nack
from memrepl.sync.results import SyncResult, SyncStatus, status_result

if TYPE_CHECKING:
    from memrepl.sync.manager import MemorySyncManager

log = logging.getLogger(__name__)

#: A round records the acknowledged cursor in the sync vector every this many batches, and when
#: it ends. Recording each ACK cost a durable commit per batch on the sender's side of the
#: exchange; a sync vector that lags by a few batches during a round is safe -- the next round
#: starts from the receiver's own durable cursor, and tombstone collection and working-memory
#: eviction only hold back more.
ACK_SAVE_EVERY_BATCHES = 16


class SyncRound:
    """One call of :meth:`MemorySyncManager.sync_with_peer` for one peer and tier."""

    def __init__(
        self, manager: MemorySyncManager, memory: Tier, peer_id: str, snapshot: bool
    ) -> None:
        self.manager = manager
        self.memory = memory
        self.tier = memory.tier
        self.peer_id = peer_id
        self.snapshot = snapshot
        self.echoes = False
        self.batches = self.items = self.applied = self.conflicts = 0

    def result(self, status: SyncStatus, cursor: int, error: str | None = None) -> SyncResult:
        return SyncResult(
            peer_id=self.peer_id,
            tier=self.tier,
            status=status,
            batches=self.batches,
            items=self.items,
            applied=self.applied,
            conflicts=self.conflicts,
            cursor=cursor,
            snapshot=self.snapshot,
            error=error,
        )

    async def run(self) -> SyncResult:
        manager = self.manager
        answer = await manager.exchange(
            self.peer_id, manager.probe_batch(self.tier, self.peer_id, replicate=False)
        )
        if not isinstance(answer, Ack):
            return status_result(self.peer_id, self.tier, answer)
        # The receiver's durable inbound cursor is the truth about what it holds: resume there,
        # even below our own record (it may have lost data) -- never skip past it.
        cursor = answer.cursor
        with self.memory.store.write() as conn:
            acked_before = vectors.acked_cursors(conn, self.tier).get(self.peer_id, 0)
            vectors.set_acked_cursor(conn, self.tier, self.peer_id, cursor, time.time_ns())
        # Below the purge horizon a delta can no longer carry every delete: send a snapshot.
        if not self.snapshot and cursor < self._horizon():
            self.snapshot = True
        # Below what it acknowledged before, the peer may have lost data, including what it once
        # sent us: resend from its cursor without holding back its own items (the echo filter).
        self.echoes = cursor < acked_before
        mark = SnapshotMark(uuid.uuid4().hex[:16]) if self.snapshot else None
        since = 0 if self.snapshot else cursor
        if mark is not None:
            # An empty opening batch, so the receiver knows the snapshot started even if the
            # tier is empty and the next batch is already the final one.
            opening = manager.probe_batch(self.tier, self.peer_id, replicate=False)
            error = await self._send(dataclasses.replace(opening, snapshot=mark))
            if error is not None:
                return self.result(error[0], cursor, error[1])
        saved = cursor
        try:
            while True:
                batch = manager.create_delta_batch(
                    self.tier,
                    self.peer_id,
                    since_timestamp=since,
                    snapshot=self.snapshot,
                    include_echoes=self.echoes,
                )
                assert batch.cursor is not None
                reached = batch.cursor
                done = not batch.items and reached <= since
                if done and mark is None:
                    status = SyncStatus.SYNCED if self.batches else SyncStatus.UP_TO_DATE
                    return self.result(status, cursor)
                if mark is not None:
                    # The last batch of a snapshot is an empty one marked final.
                    mark_now = dataclasses.replace(mark, final=done)
                    batch = dataclasses.replace(batch, snapshot=mark_now)
                error = await self._send(batch)
                if error is not None:
                    return self.result(error[0], cursor, error[1])
                since = reached
                cursor = max(cursor, reached)
                if self.batches % ACK_SAVE_EVERY_BATCHES == 0:
                    saved = self._save_acked(cursor)
                if done:
                    return self.result(SyncStatus.SYNCED, cursor)
        except BaseException:
            # Cancelled or failed: record what was acknowledged, but never let a failure to
            # record it (a closed store) hide why the round ended.
            if cursor != saved:
                try:
                    saved = self._save_acked(cursor)
                except Exception:
                    log.warning("could not record the acknowledged cursor", exc_info=True)
                    saved = cursor
            raise
        finally:
            # Ended normally (caught up, refused, timed out): record what was acknowledged.
            if cursor != saved:
                self._save_acked(cursor)

    def _save_acked(self, cursor: int) -> int:
        with self.memory.store.write() as conn:
            vectors.advance_acked_cursor(conn, self.tier, self.peer_id, cursor, time.time_ns())
        return cursor

    async def _send(self, batch: MemorySyncBatch) -> tuple[SyncStatus, str] | None:
        """Send one batch; None once it is acknowledged, else the status and the reason."""
        answer = await self.manager.exchange(self.peer_id, batch)
        if isinstance(answer, Nack):
            return SyncStatus.REJECTED, f"{answer.code}: {answer.reason}"
        if not isinstance(answer, Ack):
            return answer, f"no answer for batch {batch.batch_id}"
        self.batches += 1
        self.items += len(batch.items)
        self.applied += answer.applied
        self.conflicts += answer.conflicts
        return None

    def _horizon(self) -> int:
        with self.memory.store.read() as conn:
            return tombstones.purged_through(conn, self.tier)
