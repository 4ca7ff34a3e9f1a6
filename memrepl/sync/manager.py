"""``MemorySyncManager``: the seed's sync manager, over durable tiers and any ``Mesh``.

It owns no state of its own: sync vectors, inbound cursors, the conflict log and the clock live
in the database of the tiers registered with it, so a restarted manager carries on where the last
one stopped. Each incoming batch is applied in ONE write transaction with its bookkeeping; each
outgoing batch is marked synced only when its ACK arrives.

The exchange, for one tier (ARCHITECTURE.md, "Deltas, cursors and sync vectors"):

1. the sender opens with an empty VECTOR_SYNC batch; the ACK reports the receiver's durable
   inbound cursor, which is where the sender resumes (even if it lost its own bookkeeping);
2. if tombstones above that cursor were already collected, the sender sends a snapshot
   (REPLICATE semantics) instead of a delta, so no delete is lost;
3. it sends batches of at most ``max_batch_items`` in ``modified_at`` order, each acknowledged
   before the next, recording the acknowledged cursor in the sync vector (every 16 batches
   and when the round ends), until nothing is left.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from memrepl.errors import (
    BatchTooLargeError,
    MemreplError,
    MisaddressedBatchError,
    NodeIdMismatchError,
    PeerUnavailableError,
    ProtocolError,
    UnknownTierError,
)
from memrepl.protocol.batch import MemorySyncBatch
from memrepl.protocol.enums import MemoryTier, MessageTypes, SyncFlags, SyncOperation
from memrepl.protocol.item import MemorySyncItem
from memrepl.protocol.limits import MAX_BATCH_ITEMS
from memrepl.storage.store import resolve_tier
from memrepl.storage.tiers import Tier
from memrepl.sync import tombstones, vectors
from memrepl.sync.antientropy import AntiEntropy, CheckResult
from memrepl.sync.batches import apply_batch, decode_batch, is_replicate_request, read_delta
from memrepl.sync.messages import Ack, Nack
from memrepl.sync.results import SyncResult, SyncStatus, status_result
from memrepl.sync.rounds import SyncRound
from memrepl.sync.snapshots import forget_missing
from memrepl.sync.transport import Mesh

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_ITEMS = 100
DEFAULT_ACK_TIMEOUT_S = 30.0
#: How long a tombstone outlives the last acknowledgement before it may be collected.
DEFAULT_TOMBSTONE_GRACE_S = 24 * 3600.0

#: The item id of a REPLICATE request (the request names a tier, not an item).
REPLICATE_ITEM_ID = "*"


class MemorySyncManager:
    """Coordinates synchronization of the registered tiers with peers (the seed's API).

    ``mesh`` may be None for batch-level use (``create_delta_batch``/``apply_sync_batch``);
    ``sync_with_peer`` needs one. With a mesh, the manager answers VECTOR_SYNC batches on its
    own: it applies them and replies ACK or NACK.
    """

    def __init__(
        self,
        node_id: str,
        mesh: Mesh | None = None,
        *,
        max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS,
        ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S,
        tombstone_grace_s: float = DEFAULT_TOMBSTONE_GRACE_S,
        compress_threshold: int = 1024,
    ) -> None:
        if not 1 <= max_batch_items <= MAX_BATCH_ITEMS:
            raise BatchTooLargeError(
                f"max_batch_items must be 1..{MAX_BATCH_ITEMS}, not {max_batch_items}",
                limit=MAX_BATCH_ITEMS,
            )
        self.node_id = node_id
        self.mesh = mesh
        self.max_batch_items = max_batch_items
        self.ack_timeout_s = ack_timeout_s
        self.tombstone_grace_ns = int(tombstone_grace_s * 1e9)
        self.compress_threshold = compress_threshold
        self._tiers: dict[MemoryTier, Tier] = {}
        # Answers awaited, by batch or query id: an Ack or Nack, or a digest answer.
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self._locks: dict[tuple[str, MemoryTier], asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()
        # Per snapshot in progress, by (tier, sender, snapshot id): the sender's acknowledged
        # cursor when it began, and the ids received so far.
        self._snapshot_ids: dict[tuple[MemoryTier, str, str], tuple[int, set[str]]] = {}
        if mesh is not None:
            if mesh.node_id != node_id:
                raise NodeIdMismatchError(
                    f"mesh endpoint is {mesh.node_id!r}, manager is {node_id!r}",
                    stored=mesh.node_id,
                    requested=node_id,
                )
            mesh.register_handler(MessageTypes.VECTOR_SYNC, self.handle_sync)
            mesh.register_handler(MessageTypes.ACK, self._on_ack)
            mesh.register_handler(MessageTypes.NACK, self._on_nack)
            self.antientropy: AntiEntropy | None = AntiEntropy(self)
        else:
            self.antientropy = None

    # -- registration ---------------------------------------------------------------------

    def register_memory_tier(self, tier: MemoryTier | int, memory: Tier) -> None:
        """Register a tier object; its store must belong to this manager's node id."""
        tier = resolve_tier(tier)
        if memory.tier != tier:
            raise UnknownTierError(
                f"register_memory_tier({tier.name}): got a {memory.tier.name} tier", tier=tier
            )
        if memory.node_id != self.node_id:
            raise NodeIdMismatchError(
                f"register_memory_tier({tier.name}): the tier's store belongs to node "
                f"{memory.node_id!r}, not {self.node_id!r}",
                stored=memory.node_id,
                requested=self.node_id,
            )
        self._tiers[tier] = memory

    def registered(self, tier: MemoryTier | int) -> Tier:
        """The tier object registered for ``tier``; :class:`UnknownTierError` if none."""
        tier = resolve_tier(tier)
        try:
            return self._tiers[tier]
        except KeyError:
            raise UnknownTierError(
                f"tier {tier.name} is not registered with manager {self.node_id!r}", tier=tier
            ) from None

    @property
    def tiers(self) -> list[MemoryTier]:
        """The registered tiers."""
        return sorted(self._tiers)

    # -- sync vectors -----------------------------------------------------------------------

    def get_sync_vector(self, tier: MemoryTier | int) -> dict[str, int]:
        """``{peer: highest local modified_at the peer acknowledged}`` for ``tier``."""
        reg = self.registered(tier)
        with reg.store.read() as conn:
            return vectors.acked_cursors(conn, reg.tier)

    def update_sync_vector(self, tier: MemoryTier | int, node_id: str, timestamp: int) -> None:
        """Set ``node_id``'s acknowledged cursor for ``tier`` (a lower value means: resend)."""
        reg = self.registered(tier)
        with reg.store.write() as conn:
            vectors.set_acked_cursor(conn, reg.tier, node_id, timestamp, time.time_ns())

    def forget_peer(self, tier: MemoryTier | int, node_id: str) -> None:
        """Stop tracking a peer for ``tier``; forgotten in every tier, it no longer holds back
        tombstone collection (memrepl.sync.tombstones)."""
        reg = self.registered(tier)
        with reg.store.write() as conn:
            vectors.forget_peer(conn, reg.tier, node_id)

    # -- outgoing ---------------------------------------------------------------------------

    def create_delta_batch(
        self,
        tier: MemoryTier | int,
        target_node: str,
        since_timestamp: int | None = None,
        *,
        snapshot: bool = False,
        include_echoes: bool = False,
    ) -> MemorySyncBatch:
        """The next batch of changes for ``target_node`` after ``since_timestamp``.

        ``since_timestamp`` defaults to the target's sync vector entry. At most
        ``max_batch_items`` items, in ``modified_at`` order; the batch's ``cursor`` is the
        highest local change it covers. ``snapshot=True`` reads the tier's whole state
        (REPLICATE) from ``since_timestamp`` (default 0), echoes included;
        ``include_echoes=True`` keeps the items that came from the target (a peer that lost data).
        """
        reg = self.registered(tier)
        with reg.store.read() as conn:
            vector = vectors.acked_cursors(conn, reg.tier)
            if since_timestamp is None:
                since_timestamp = 0 if snapshot else vector.get(target_node, 0)
            delta = read_delta(
                conn,
                reg.spec,
                since_timestamp,
                max_items=self.max_batch_items,
                exclude_peer=None if snapshot or include_echoes else target_node,
            )
        flags = (
            SyncFlags.REQUIRES_ACK if snapshot else SyncFlags.DELTA_ONLY | SyncFlags.REQUIRES_ACK
        )
        return MemorySyncBatch(
            batch_id=uuid.uuid4().hex[:16],
            source_node=self.node_id,
            target_node=target_node,
            tier=reg.tier,
            items=delta.items,
            flags=flags,
            sync_vector=vector,
            cursor=delta.cursor,
        )

    def probe_batch(self, tier: MemoryTier, target: str, *, replicate: bool) -> MemorySyncBatch:
        """An empty batch whose ACK reports the peer's inbound cursor (or a REPLICATE request)."""
        items = []
        if replicate:
            items.append(
                MemorySyncItem(
                    item_id=REPLICATE_ITEM_ID,
                    timestamp_ns=time.time_ns(),
                    tier=tier,
                    operation=SyncOperation.REPLICATE,
                )
            )
        return MemorySyncBatch(
            batch_id=uuid.uuid4().hex[:16],
            source_node=self.node_id,
            target_node=target,
            tier=tier,
            items=items,
            flags=SyncFlags.REQUIRES_ACK,
        )

    # -- incoming ---------------------------------------------------------------------------

    def apply_sync_batch(self, batch: MemorySyncBatch) -> tuple[int, int]:
        """Apply a peer's batch in one write transaction: ``(applied, conflicts)``.

        ``applied`` counts items that changed local state, ``conflicts`` concurrent versions
        detected (and logged). Refused whole, with nothing written, for a batch addressed to
        another node (:class:`MisaddressedBatchError`), an unregistered tier
        (:class:`UnknownTierError`), a stamp too far ahead (:class:`ClockSkewError`) or a
        malformed item (:class:`ProtocolError`).
        """
        result = self._apply(batch)
        return result[0], result[1]

    def _apply(self, batch: MemorySyncBatch) -> tuple[int, int, int]:
        if batch.target_node != self.node_id:
            raise MisaddressedBatchError(
                f"batch {batch.batch_id!r} is addressed to {batch.target_node!r}, "
                f"this is {self.node_id!r}",
                target_node=batch.target_node,
                node_id=self.node_id,
            )
        reg = self.registered(batch.tier)
        if is_replicate_request(batch):
            raise ProtocolError(
                f"batch {batch.batch_id!r} is a REPLICATE request, not data",
                code="unexpected-replicate",
            )
        mark = batch.snapshot
        key = (reg.tier, batch.source_node, mark.snapshot_id if mark else "")
        store = reg.store
        with store.write() as conn, store.stamping(conn) as clock:
            remote = decode_batch(batch)
            applied = apply_batch(conn, reg.spec, clock, batch, remote)
            if mark is not None and key not in self._snapshot_ids and not mark.final:
                # What the sender had acknowledged when the snapshot began: later local writes
                # may reach it during the snapshot, yet are absent from batches already read.
                acked = vectors.acked_cursors(conn, reg.tier).get(batch.source_node, 0)
                self._snapshot_ids[key] = (acked, set())
            if mark is not None and mark.final:
                started = self._snapshot_ids.get(key)
                if started is None:
                    log.warning(
                        "snapshot %s from %s ended without its start here (restarted?): "
                        "nothing forgotten",
                        mark.snapshot_id,
                        batch.source_node,
                    )
                else:
                    acked_at_start, present = started
                    present.update(item.item_id for item in batch.items)
                    forget_missing(conn, reg.spec, batch.source_node, present, acked_at_start)
        # Only a committed batch counts towards its snapshot.
        if mark is not None and mark.final:
            self._snapshot_ids.pop(key, None)
        elif mark is not None:
            self._snapshot_ids[key][1].update(item.item_id for item in batch.items)
        return applied.applied, applied.conflicts, applied.cursor

    def handle_sync(self, data: bytes, peer_id: str) -> asyncio.Task[None] | None:
        """The seed's ``handle_sync``: unpack, apply, answer ACK or NACK through the mesh.

        For a REPLICATE request it returns the task that sends the snapshot, so a mesh (or a
        test) can wait for it; otherwise None.
        """
        batch_id = ""
        try:
            batch = MemorySyncBatch.unpack(data)
            batch_id = batch.batch_id
            if batch.source_node != peer_id:
                raise ProtocolError(
                    f"batch from connection {peer_id!r} claims source {batch.source_node!r}",
                    code="wrong-source",
                )
            if is_replicate_request(batch):
                self.registered(batch.tier)
                self._reply(peer_id, MessageTypes.ACK, Ack(batch_id, batch.tier, 0, 0, 0).encode())
                return self._start_background(self._answer_replicate(peer_id, batch.tier))
            applied, conflicts, cursor = self._apply(batch)
        except MemreplError as exc:
            log.warning("refused batch %r from %s: %s", batch_id, peer_id, exc)
            # The error's own code (memrepl.errors): stable, whatever its class is called.
            self._reply(peer_id, MessageTypes.NACK, Nack(batch_id, exc.code, str(exc)).encode())
            return None
        ack = Ack(batch_id, int(batch.tier), cursor, applied, conflicts)
        self._reply(peer_id, MessageTypes.ACK, ack.encode())
        return None

    async def _answer_replicate(self, peer_id: str, tier: MemoryTier) -> None:
        result = await self.sync_with_peer(peer_id, tier, snapshot=True)
        if not result.ok:
            log.warning(
                "snapshot of %s for %s ended %s: %s",
                tier.name,
                peer_id,
                result.status,
                result.error,
            )

    def _reply(self, peer_id: str, msg_type: MessageTypes, data: bytes) -> None:
        if self.mesh is None:
            return
        try:
            self.mesh.send(peer_id, msg_type, data)
        except PeerUnavailableError as exc:
            log.warning("could not answer %s: %s", peer_id, exc)

    def _on_ack(self, data: bytes, peer_id: str) -> None:
        try:
            ack = Ack.decode(data)
        except ProtocolError as exc:
            log.warning("bad ACK from %s: %s", peer_id, exc)
            return
        self.resolve(ack.batch_id, ack)

    def _on_nack(self, data: bytes, peer_id: str) -> None:
        try:
            nack = Nack.decode(data)
        except ProtocolError as exc:
            log.warning("bad NACK from %s: %s", peer_id, exc)
            return
        self.resolve(nack.batch_id, nack)

    def resolve(self, request_id: str, answer: object) -> None:
        """Hand an answer (an ACK, a NACK, a digest answer) to whoever awaits ``request_id``."""
        future = self._waiting.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(answer)

    # -- a sync round -----------------------------------------------------------------------

    async def sync_with_peer(
        self, peer_id: str, tier: MemoryTier | int, *, snapshot: bool = False
    ) -> SyncResult:
        """Bring ``peer_id`` up to date for ``tier``; see the module docstring for the steps.

        Returns a :class:`SyncResult`; a timeout, a NACK or an unreachable peer come back as its
        status (nothing unacknowledged is ever marked synced). ``snapshot=True`` sends the whole
        tier (REPLICATE) instead of a delta.
        """
        reg = self.registered(tier)
        lock = self._locks.setdefault((peer_id, reg.tier), asyncio.Lock())
        async with lock:
            return await SyncRound(self, reg, peer_id, snapshot).run()

    async def request_replicate(self, peer_id: str, tier: MemoryTier | int) -> SyncResult:
        """Ask ``peer_id`` to send this node its whole ``tier`` (bootstrap or repair).

        Returns when the peer has acknowledged the request; the snapshot follows as ordinary
        batches, applied as they come.
        """
        reg = self.registered(tier)
        answer = await self.exchange(peer_id, self.probe_batch(reg.tier, peer_id, replicate=True))
        return status_result(peer_id, reg.tier, answer)

    async def exchange(self, peer_id: str, batch: MemorySyncBatch) -> Ack | Nack | SyncStatus:
        """Send one batch and wait for its answer (or a status saying why there is none)."""
        packed = batch.pack(compress_threshold=self.compress_threshold)
        return await self.exchange_packed(peer_id, batch.batch_id, packed)

    async def exchange_packed(
        self, peer_id: str, batch_id: str, packed: bytes
    ) -> Ack | Nack | SyncStatus:
        """:meth:`exchange` of a batch already packed."""
        answer = await self.ask(peer_id, batch_id, MessageTypes.VECTOR_SYNC, packed)
        if isinstance(answer, Ack | Nack | SyncStatus):
            return answer
        return SyncStatus.REJECTED  # pragma: no cover - a batch id only ever gets an ACK/NACK

    async def ask(self, peer_id: str, request_id: str, msg_type: MessageTypes, data: bytes) -> Any:
        """Send one message and wait for the answer filed under ``request_id`` (see
        :meth:`resolve`), or return the status saying why none came."""
        if self.mesh is None:
            raise PeerUnavailableError("sync_with_peer needs a mesh", peer_id=peer_id)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            self.mesh.send(peer_id, msg_type, data)
            return await asyncio.wait_for(future, self.ack_timeout_s)
        except PeerUnavailableError:
            return SyncStatus.UNREACHABLE
        except TimeoutError:
            return SyncStatus.TIMEOUT
        finally:
            self._waiting.pop(request_id, None)

    async def check_peer(self, peer_id: str) -> CheckResult:
        """One anti-entropy check with ``peer_id``: compare the digests of every registered
        tier and repair what differs (:mod:`memrepl.sync.antientropy`)."""
        if self.antientropy is None:
            raise PeerUnavailableError("an anti-entropy check needs a mesh", peer_id=peer_id)
        return await self.antientropy.check(peer_id)

    def start_task(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        """Run ``coroutine`` as a task this manager tracks (see :meth:`drain`)."""
        return self._start_background(coroutine)

    def _start_background(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        try:
            task = asyncio.get_running_loop().create_task(coroutine)
        except RuntimeError:
            coroutine.close()
            log.warning("a REPLICATE request needs a running event loop to answer it")
            return None
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def drain(self) -> None:
        """Wait for the snapshots this manager is sending in answer to REPLICATE requests."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- tombstones -------------------------------------------------------------------------

    def purge_tombstones(self, tier: MemoryTier | int | None = None) -> int:
        """Delete tombstones every known peer acknowledged longer than the grace period ago.

        Returns how many were deleted. A peer whose cursor is below the new horizon is later
        answered with a snapshot, never a delta that would miss these deletes.
        """
        chosen = [self.registered(tier)] if tier is not None else list(self._tiers.values())
        purged = 0
        for reg in chosen:
            with reg.store.write() as conn:
                purged += tombstones.purge(
                    conn, reg.spec, grace_ns=self.tombstone_grace_ns, now_ns=time.time_ns()
                )
        return purged
