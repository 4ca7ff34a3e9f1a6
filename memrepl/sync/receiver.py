"""The incoming path of a sync manager: what a peer's VECTOR_SYNC messages can do to this node.

:class:`BatchReceiver` is :meth:`MemorySyncManager.handle_sync` and
:meth:`~MemorySyncManager.apply_sync_batch`. The rules that keep it right, each checked before
anything is written, per batch (never per item, so the apply path stays as cheap as before):

- **Every input ends in an ACK or a NACK with a specific, stable code** -- never a traceback, never
  silence the sender must wait out. A fault of this node (a database error) is NACKed
  ``internal-error`` and logged with its traceback; everything a peer can send is refused with a
  code of its own (``wrong-source``, ``bad-cursor``, ``clock-skew``, ``unrequested-snapshot``,
  ``bad-replicate-request``, ``unknown-tier``, ``bad-item-state``, ...). Each refusal is counted in
  ``sync_refusals`` (memrepl.sync.refusals).
- **A batch moves only its own sender's inbound cursor**: the batch must name the connection's
  peer as its source, the cursor is stored under that source, and a cursor (or purge horizon)
  that cannot be a stamp of the sender's clock is refused (memrepl.sync.batches.check_cursors).
- **Snapshots only as asked** (memrepl.sync.snapshots): marked batches outside the snapshot this
  node requested from that peer are refused; a snapshot batch moves the inbound cursor only with
  the final one, which forgets within the bound and records what it forgot. A peer's purge
  horizon makes this node ask it for a snapshot again only after a back-off.
- **A REPLICATE request** is exactly one REPLICATE item of a registered tier, addressed here; it
  is ACKed and answered with a snapshot (memrepl.sync.answers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from memrepl.clock import HybridLogicalClock
from memrepl.errors import MemreplError, MisaddressedBatchError, ProtocolError
from memrepl.protocol.batch import MemorySyncBatch
from memrepl.protocol.enums import MemoryTier, MessageTypes
from memrepl.storage.tiers import Tier
from memrepl.sync.batches import (
    Applied,
    apply_batch,
    check_cursors,
    check_replicate_request,
    decode_batch,
    is_replicate_request,
)
from memrepl.sync.messages import Ack, Nack
from memrepl.sync.snapshots import SnapshotEnd, SnapshotRequest, finish_snapshot, forget_bound
from memrepl.sync.worker import StoreWorker

if TYPE_CHECKING:
    from memrepl.sync.manager import MemorySyncManager

log = logging.getLogger(__name__)

#: The NACK code of a fault of this node (not of the peer's input): the peer retries later.
INTERNAL_ERROR_CODE = "internal-error"


@dataclass(slots=True)
class _Incoming:
    """A batch that passed the checks made before its transaction."""

    batch: MemorySyncBatch
    memory: Tier
    request: SnapshotRequest | None


class BatchReceiver:
    """Applies and answers the batches peers send one manager (see the module docstring).

    Applying a batch is three steps: the checks and the snapshot bookkeeping that need no
    store (:meth:`_prepare`, on the event loop), the write transaction (:meth:`_commit`, which
    may run in a :class:`~memrepl.sync.worker.StoreWorker` thread: it touches nothing else),
    and the bookkeeping after the commit (:meth:`_after`, on the event loop again).
    """

    def __init__(self, manager: MemorySyncManager) -> None:
        self.manager = manager

    def handle(self, data: bytes, peer_id: str) -> asyncio.Task[None] | None:
        """:meth:`MemorySyncManager.handle_sync`."""
        batch: MemorySyncBatch | None = None
        try:
            batch = MemorySyncBatch.unpack(data)
            self._check_source(batch, peer_id)
            if is_replicate_request(batch):
                return self._replicate_requested(batch, peer_id)
            applied, needs_snapshot = self.apply(batch)
        except Exception as exc:
            self._failed(peer_id, batch, exc)
            return None
        return self._answer(peer_id, batch, applied, needs_snapshot)

    async def handle_in(self, worker: StoreWorker, data: bytes, peer_id: str) -> None:
        """:meth:`handle`, with the batch's transaction run by ``worker`` in ``peer_id``'s turn:
        the event loop stays free while it commits."""
        batch: MemorySyncBatch | None = None
        try:
            batch = MemorySyncBatch.unpack(data)
            self._check_source(batch, peer_id)
            if is_replicate_request(batch):
                self._replicate_requested(batch, peer_id)
                return
            incoming = self._prepare(batch)
            applied, ended = await worker.run(peer_id, self._commit, incoming)
            needs_snapshot = self._after(incoming, applied, ended)
        except Exception as exc:
            self._failed(peer_id, batch, exc)
            return
        self._answer(peer_id, batch, applied, needs_snapshot)

    def apply(self, batch: MemorySyncBatch) -> tuple[Applied, bool]:
        """Apply ``batch`` in one write transaction; what it did, and whether its sender says
        this node needs a snapshot (a purge horizon above the inbound cursor it leaves)."""
        incoming = self._prepare(batch)
        applied, ended = self._commit(incoming)
        return applied, self._after(incoming, applied, ended)

    @staticmethod
    def _check_source(batch: MemorySyncBatch, peer_id: str) -> None:
        if batch.source_node != peer_id:
            raise ProtocolError(
                f"batch from connection {peer_id!r} claims source {batch.source_node!r}",
                code="wrong-source",
            )

    def _failed(self, peer_id: str, batch: MemorySyncBatch | None, exc: Exception) -> None:
        batch_id, tier = ("", 0) if batch is None else (batch.batch_id, int(batch.tier))
        if isinstance(exc, MemreplError):
            self._refuse(peer_id, batch_id, tier, exc)
            return
        log.error("batch %r from %s: internal error", batch_id, peer_id, exc_info=exc)
        reason = f"{type(exc).__name__} while applying the batch (see the receiver's log)"
        manager = self.manager
        manager.reply(peer_id, MessageTypes.NACK, Nack(batch_id, INTERNAL_ERROR_CODE, reason))
        manager.observer.batch_refused(peer_id, _tier_or_none(tier), code=INTERNAL_ERROR_CODE)

    def _answer(
        self, peer_id: str, batch: MemorySyncBatch, applied: Applied, needs_snapshot: bool
    ) -> asyncio.Task[None] | None:
        manager = self.manager
        tier = int(batch.tier)
        ack = Ack(batch.batch_id, tier, applied.cursor, applied.applied, applied.conflicts)
        manager.reply(peer_id, MessageTypes.ACK, ack)
        manager.observer.batch_applied(
            peer_id,
            batch.tier,
            items=len(batch.items),
            applied=applied.applied,
            conflicts=applied.conflicts,
            cursor=batch.cursor,
            pending=batch.pending,
        )
        if not needs_snapshot:
            return None
        wait_s = manager.snapshot_requests.may_ask(batch.tier, peer_id, time.monotonic())
        if wait_s:
            log.warning(
                "%s's purge horizon for the %s tier is above what this node has from it again, "
                "soon after its last snapshot: not asking for another one for %.0f s",
                peer_id,
                batch.tier.name.lower(),
                wait_s,
            )
            return None
        log.info(
            "%s's purge horizon for the %s tier is above what this node has from it: asking it "
            "for a snapshot",
            peer_id,
            batch.tier.name.lower(),
        )
        return manager.start_task(manager.ask_for_snapshot(peer_id, batch.tier))

    def _prepare(self, batch: MemorySyncBatch) -> _Incoming:
        manager = self.manager
        if batch.target_node != manager.node_id:
            raise MisaddressedBatchError(
                f"batch {batch.batch_id!r} is addressed to {batch.target_node!r}, "
                f"this is {manager.node_id!r}",
                target_node=batch.target_node,
                node_id=manager.node_id,
            )
        memory = manager.registered(batch.tier)
        if is_replicate_request(batch):
            raise ProtocolError(
                f"batch {batch.batch_id!r} is a REPLICATE request, not data",
                code="unexpected-replicate",
            )
        settings = memory.store.clock_settings
        check_cursors(batch, settings.wall, settings.max_skew_ns)
        request = manager.snapshot_requests.for_batch(memory.tier, batch)
        return _Incoming(batch, memory, request)

    def _commit(self, incoming: _Incoming) -> tuple[Applied, SnapshotEnd | None]:
        batch, memory, request = incoming.batch, incoming.memory, incoming.request
        mark = batch.snapshot
        final = mark is not None and mark.final
        ended: SnapshotEnd | None = None
        store = memory.store
        with store.write() as conn, store.stamping(conn) as clock:
            remote = decode_batch(batch)
            # A snapshot moves the inbound cursor only with its final batch: until then this
            # node has not got everything below it (memrepl.sync.snapshots).
            moved = batch.cursor if mark is None or final else None
            applied = apply_batch(conn, memory.spec, clock, batch, remote, cursor=moved)
            if final:
                assert request is not None  # for_batch refuses a mark without one
                ended = self._finish_snapshot(conn, memory, clock, request, batch)
        return applied, ended

    def _after(self, incoming: _Incoming, applied: Applied, ended: SnapshotEnd | None) -> bool:
        batch, request = incoming.batch, incoming.request
        if request is not None:
            # Only a committed batch counts towards its snapshot.
            request.present.update(item.item_id for item in batch.items)
            if ended is not None:
                self.manager.snapshot_requests.finished(request, time.monotonic())
                _log_snapshot_end(request, ended)
        horizon = batch.purge_horizon
        return batch.snapshot is None and horizon is not None and applied.cursor < horizon

    def _finish_snapshot(
        self,
        conn: Connection,
        memory: Tier,
        clock: HybridLogicalClock,
        request: SnapshotRequest,
        batch: MemorySyncBatch,
    ) -> SnapshotEnd:
        settings = memory.store.clock_settings
        horizon = batch.purge_horizon or 0
        now = settings.wall()
        bound = forget_bound(
            horizon,
            wall_ns=now,
            grace_ns=self.manager.tombstone_grace_ns,
            max_skew_ns=settings.max_skew_ns,
        )
        present = request.present | {item.item_id for item in batch.items}
        return finish_snapshot(
            conn,
            memory.spec,
            clock,
            request,
            present=present,
            horizon=horizon,
            bound=bound,
            now_ns=now,
        )

    def _replicate_requested(
        self, batch: MemorySyncBatch, peer_id: str
    ) -> asyncio.Task[None] | None:
        manager = self.manager
        check_replicate_request(batch)
        if batch.target_node != manager.node_id:
            raise MisaddressedBatchError(
                f"REPLICATE request {batch.batch_id!r} is addressed to {batch.target_node!r}",
                target_node=batch.target_node,
                node_id=manager.node_id,
            )
        tier = manager.registered(batch.tier).tier
        manager.reply(peer_id, MessageTypes.ACK, Ack(batch.batch_id, int(tier), 0, 0, 0))
        return manager.snapshot_answers.requested(peer_id, tier, batch.batch_id)

    def _refuse(self, peer_id: str, batch_id: str, tier: int, exc: MemreplError) -> None:
        manager = self.manager
        # The error's own code (memrepl.errors): stable, whatever its class is called.
        code = exc.code
        log.warning("refused batch %r from %s: %s", batch_id, peer_id, exc)
        manager.reply(peer_id, MessageTypes.NACK, Nack(batch_id, code, str(exc)))
        manager.observer.batch_refused(peer_id, _tier_or_none(tier), code=code)
        ahead = getattr(exc, "ahead_ns", None)
        manager.record_refusal(
            peer_id,
            tier,
            "inbound",
            code=code,
            reason=str(exc),
            ahead_ns=ahead if isinstance(ahead, int) else None,
        )


def _log_snapshot_end(request: SnapshotRequest, ended: SnapshotEnd) -> None:
    tier = request.tier.name.lower()
    if not ended.forgotten and not ended.resent:
        log.info(
            "snapshot %s of the %s tier from %s applied", request.snapshot_id, tier, request.peer_id
        )
        return
    log.warning(
        "snapshot %s of the %s tier from %s lacked %d items this node had: %d forgotten (latest "
        "write at or before %d, which its purge horizon explains; kept in forgotten_items), %d "
        "kept and sent back to it",
        request.snapshot_id,
        tier,
        request.peer_id,
        len(ended.forgotten) + ended.resent,
        len(ended.forgotten),
        ended.bound,
        ended.resent,
    )


def _tier_or_none(tier: int) -> MemoryTier | None:
    """The tier a refused batch named, None when it named none this node knows."""
    try:
        return MemoryTier(tier)
    except ValueError:
        return None
