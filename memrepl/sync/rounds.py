"""One ``sync_with_peer`` round: the probe, then acknowledged batches until the peer is caught up.

The rule that keeps it right: a batch's cursor is recorded in the sync vector only after its ACK
(every :data:`ACK_SAVE_EVERY_BATCHES` batches and when the round ends), and the round starts from
the cursor the receiver itself reports (its durable inbound cursor), so nothing unacknowledged is
ever marked synced and nothing the receiver lacks is ever skipped. That reported cursor is a
position in this node's own change stream, so it can never be above this node's clock: an ACK
that says otherwise is refused and recorded nowhere.

A snapshot (REPLICATE) is sent only because the receiver asked: the probe carries this node's
purge horizon, a receiver below it asks (memrepl.sync.answers hands the request to the round),
and the round sends the same loop from cursor 0 without the echo filter, every batch marked with
the request's id, closed by a final marked batch that carries the purge horizon again, at which
the receiver forgets what that horizon explains (memrepl.sync.snapshots). A round answering a
request made on the receiver's own account (bootstrap, repair) is given its id and probes without
a horizon, so it does not provoke a second request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from memrepl.protocol.batch import MemorySyncBatch, SnapshotMark
from memrepl.storage.counts import count_since
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
        self,
        manager: MemorySyncManager,
        memory: Tier,
        peer_id: str,
        *,
        snapshot_id: str | None = None,
    ) -> None:
        self.manager = manager
        self.memory = memory
        self.tier = memory.tier
        self.peer_id = peer_id
        #: The id of the snapshot the peer asked for (None: a delta, unless it asks now).
        self.snapshot_id = snapshot_id
        self.echoes = False
        self.batches = self.items = self.applied = self.conflicts = 0
        #: Items the round expects to send, counted as it began (announced to the receiver).
        self.total = 0

    @property
    def snapshot(self) -> bool:
        """Whether this round sends a snapshot."""
        return self.snapshot_id is not None

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
        answers = manager.snapshot_answers
        horizon = self._horizon() if self.snapshot_id is None else 0
        # Registered before the probe goes out: the peer's request may overtake the probe's ACK.
        wanted = answers.expect(self.peer_id, self.tier) if horizon else None
        try:
            probe = manager.probe_batch(
                self.tier, self.peer_id, replicate=False, purge_horizon=horizon or None
            )
            answer = await manager.exchange(self.peer_id, probe)
            if isinstance(answer, Nack):
                manager.observer.batch_rejected(self.peer_id, self.tier, code=answer.code)
            if not isinstance(answer, Ack):
                return status_result(self.peer_id, self.tier, answer)
            # The receiver's durable inbound cursor is the truth about what it holds: resume
            # there, even below our own record (it may have lost data) -- never skip past it.
            cursor = answer.cursor
            acked_before = self._take_reported_cursor(cursor)
            if acked_before is None:
                return self.result(
                    SyncStatus.REJECTED,
                    0,
                    f"bad-ack-cursor: {self.peer_id} reports cursor {cursor}, beyond every "
                    "change this node ever made",
                )
            if wanted is not None and (cursor < horizon or wanted.done()):
                # Below the purge horizon a delta can no longer carry every delete: the peer
                # was told, and asks for a snapshot.
                try:
                    async with asyncio.timeout(manager.ack_timeout_s):
                        self.snapshot_id = await wanted
                except TimeoutError:
                    return self.result(
                        SyncStatus.TIMEOUT,
                        cursor,
                        f"{self.peer_id} is below this node's purge horizon and did not ask "
                        f"for a snapshot within {manager.ack_timeout_s:g} s",
                    )
        finally:
            if wanted is not None:
                answers.done_expecting(self.peer_id, self.tier, wanted)
        # Below what it acknowledged before, the peer may have lost data, including what it once
        # sent us: resend from its cursor without holding back its own items (the echo filter).
        self.echoes = cursor < acked_before
        mark = SnapshotMark(self.snapshot_id) if self.snapshot_id is not None else None
        since = 0 if self.snapshot else cursor
        self.total = self._count(since)
        manager.observer.round_started(
            self.peer_id, self.tier, total=self.total, snapshot=self.snapshot
        )
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
                # What is left after this batch, as far as the count at the start knew.
                pending = 0 if done else max(0, self.total - self.items - len(batch.items))
                if mark is not None:
                    # The last batch of a snapshot is an empty one marked final, with the purge
                    # horizon read after every other batch: what it may make the peer forget.
                    mark_now = dataclasses.replace(mark, final=done)
                    horizon_now = self._horizon() if done else None
                    batch = dataclasses.replace(
                        batch, snapshot=mark_now, purge_horizon=horizon_now, pending=pending
                    )
                else:
                    batch = dataclasses.replace(batch, pending=pending)
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

    def _take_reported_cursor(self, cursor: int) -> int | None:
        """Record the peer's reported cursor as its sync vector entry; return the entry before.

        None (nothing recorded) when the cursor is beyond this node's clock: no batch of this
        node ever carried it.
        """
        store = self.memory.store
        with store.write() as conn, store.stamping(conn) as clock:
            if cursor > clock.last_ns:
                log.warning(
                    "%s reported cursor %d for the %s tier, beyond this node's clock (%d): refused",
                    self.peer_id,
                    cursor,
                    self.tier.name.lower(),
                    clock.last_ns,
                )
                return None
            acked_before = vectors.acked_cursors(conn, self.tier).get(self.peer_id, 0)
            vectors.set_acked_cursor(conn, self.tier, self.peer_id, cursor, time.time_ns())
        return acked_before

    def _save_acked(self, cursor: int) -> int:
        with self.memory.store.write() as conn:
            vectors.advance_acked_cursor(conn, self.tier, self.peer_id, cursor, time.time_ns())
        return cursor

    async def _send(self, batch: MemorySyncBatch) -> tuple[SyncStatus, str] | None:
        """Send one batch; None once it is acknowledged, else the status and the reason."""
        answer = await self.manager.exchange(self.peer_id, batch)
        observer = self.manager.observer
        if isinstance(answer, Nack):
            observer.batch_rejected(self.peer_id, self.tier, code=answer.code)
            return SyncStatus.REJECTED, f"{answer.code}: {answer.reason}"
        if not isinstance(answer, Ack):
            return answer, f"no answer for batch {batch.batch_id}"
        self.batches += 1
        self.items += len(batch.items)
        self.applied += answer.applied
        self.conflicts += answer.conflicts
        observer.batch_acked(
            self.peer_id,
            self.tier,
            items=len(batch.items),
            applied=answer.applied,
            conflicts=answer.conflicts,
        )
        return None

    def _count(self, since: int) -> int:
        """The items this round expects to send from ``since`` (the echo filter applied)."""
        exclude = None if self.snapshot or self.echoes else self.peer_id
        with self.memory.store.read() as conn:
            return count_since(conn, self.memory.spec, since, exclude_received_from=exclude)

    def _horizon(self) -> int:
        with self.memory.store.read() as conn:
            return tombstones.purged_through(conn, self.tier)
