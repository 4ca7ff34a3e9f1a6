"""``MemorySyncManager``: the seed's sync manager, over durable tiers and any ``Mesh``.

It owns no state of its own but the open snapshot requests: sync vectors, inbound cursors, the
conflict log, the record of forgotten items and refusals, and the clock live in the database of
the tiers registered with it, so a restarted manager carries on where the last one stopped. Each
incoming batch is applied in ONE write transaction with its bookkeeping; each outgoing batch is
marked synced only when its ACK arrives.

The exchange, for one tier (ARCHITECTURE.md, "Deltas, cursors and sync vectors"; the steps are
:class:`~memrepl.sync.rounds.SyncRound`):

1. the sender opens with an empty VECTOR_SYNC batch (the probe) carrying its purge horizon; the
   ACK reports the receiver's durable inbound cursor, which is where the sender resumes (even if
   it lost its own bookkeeping);
2. a receiver whose cursor is below that horizon may have missed deletes no delta can carry any
   more: it asks for a snapshot (a REPLICATE request), and the sender answers with the tier's
   whole state (memrepl.sync.snapshots, memrepl.sync.answers); nothing else ever sends one;
3. otherwise the sender sends batches of at most ``max_batch_items`` in ``modified_at`` order,
   each acknowledged before the next, recording the acknowledged cursor in the sync vector
   (every 16 batches and when the round ends), until nothing is left.

What a peer's input can do here (the incoming path, :meth:`MemorySyncManager.handle_sync`): every
message gets an ACK or a NACK with a stable code, never a traceback. A batch moves only its own
sender's inbound cursor, and only to a cursor that can be a stamp of the sender's clock; snapshot
batches are accepted only inside a snapshot this node asked for; an ACK or NACK settles only a
batch sent to the peer it came from. Refusals are counted per peer in ``sync_refusals``.
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
from memrepl.sync.answers import SnapshotAnswers
from memrepl.sync.antientropy import AntiEntropy, CheckResult
from memrepl.sync.batches import read_delta
from memrepl.sync.messages import Ack, Nack
from memrepl.sync.observer import SyncObserver
from memrepl.sync.receiver import BatchReceiver
from memrepl.sync.refusals import Direction, record_refusal
from memrepl.sync.results import SyncResult, SyncStatus, status_result
from memrepl.sync.rounds import SyncRound
from memrepl.sync.snapshots import SnapshotRequests
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
    own: it applies them and replies ACK or NACK. ``tombstone_grace_s`` also bounds what a
    snapshot may make this node forget (memrepl.sync.snapshots): give every node of a cluster
    the same.
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
        #: Told about every round and batch, both ways (a node's monitor; by default nothing).
        self.observer = SyncObserver()
        self._tiers: dict[MemoryTier, Tier] = {}
        # Answers awaited (an Ack or Nack, or a digest answer), by (peer, batch or query id):
        # only the peer asked can settle one.
        self._waiting: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self._locks: dict[tuple[str, MemoryTier], asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()
        #: The snapshots this node asked peers for (memrepl.sync.snapshots).
        self.snapshot_requests = SnapshotRequests()
        #: The REPLICATE requests peers sent this node (memrepl.sync.answers).
        self.snapshot_answers = SnapshotAnswers(self._start_answer)
        self._receiver = BatchReceiver(self)
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

    def probe_batch(
        self,
        tier: MemoryTier,
        target: str,
        *,
        replicate: bool,
        purge_horizon: int | None = None,
    ) -> MemorySyncBatch:
        """An empty batch whose ACK reports the peer's inbound cursor (``purge_horizon``: this
        node's, so that a peer below it asks for a snapshot), or a REPLICATE request."""
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
            purge_horizon=purge_horizon,
        )

    # -- incoming ---------------------------------------------------------------------------

    def apply_sync_batch(self, batch: MemorySyncBatch) -> tuple[int, int]:
        """Apply a peer's batch in one write transaction: ``(applied, conflicts)``.

        ``applied`` counts items that changed local state, ``conflicts`` concurrent versions
        detected (and logged). Refused whole, with nothing written, for a batch addressed to
        another node (:class:`MisaddressedBatchError`), an unregistered tier
        (:class:`UnknownTierError`), a stamp too far ahead (:class:`ClockSkewError`), a cursor
        that cannot be a stamp (:class:`BadCursorError`), a snapshot batch this node did not
        ask for (:class:`UnrequestedSnapshotError`) or a malformed item (:class:`ProtocolError`).
        """
        applied, _ = self._receiver.apply(batch)
        return applied.applied, applied.conflicts

    def handle_sync(self, data: bytes, peer_id: str) -> asyncio.Task[None] | None:
        """The seed's ``handle_sync``: unpack, apply, answer ACK or NACK through the mesh.

        Every input ends in an ACK or a NACK whose code names the fault (memrepl.sync.receiver).
        For a REPLICATE request, or a batch after which this node asks for a snapshot, it returns
        the task that sends the snapshot or the request, so a mesh (or a test) can wait for it;
        otherwise None.
        """
        return self._receiver.handle(data, peer_id)

    def record_refusal(
        self,
        peer_id: str,
        tier: int,
        direction: Direction,
        *,
        code: str,
        reason: str,
        ahead_ns: int | None = None,
    ) -> None:
        """Count a refusal in ``sync_refusals`` (memrepl.sync.refusals: best effort)."""
        memory = next(iter(self._tiers.values()), None)
        if memory is None:
            return
        try:
            with memory.store.write() as conn:
                record_refusal(
                    conn,
                    peer_id=peer_id,
                    tier=tier,
                    direction=direction,
                    code=code,
                    reason=reason,
                    now_ns=time.time_ns(),
                    ahead_ns=ahead_ns,
                )
        except Exception:
            log.warning("could not record a refusal (%s, %s)", peer_id, code, exc_info=True)

    def reply(self, peer_id: str, msg_type: MessageTypes, answer: Ack | Nack) -> None:
        """Send an ACK or a NACK (a peer that is gone by now is logged, not raised)."""
        if self.mesh is None:
            return
        try:
            self.mesh.send(peer_id, msg_type, answer.encode())
        except PeerUnavailableError as exc:
            log.warning("could not answer %s: %s", peer_id, exc)

    def _on_ack(self, data: bytes, peer_id: str) -> None:
        try:
            ack = Ack.decode(data)
        except ProtocolError as exc:
            log.warning("bad ACK from %s: %s", peer_id, exc)
            return
        self.resolve(peer_id, ack.batch_id, ack)

    def _on_nack(self, data: bytes, peer_id: str) -> None:
        try:
            nack = Nack.decode(data)
        except ProtocolError as exc:
            log.warning("bad NACK from %s: %s", peer_id, exc)
            return
        self.resolve(peer_id, nack.batch_id, nack)

    def resolve(self, peer_id: str, request_id: str, answer: object) -> None:
        """Hand an answer (an ACK, a NACK, a digest answer) from ``peer_id`` to whoever awaits
        ``request_id`` from that peer (an answer from any other peer settles nothing)."""
        future = self._waiting.pop((peer_id, request_id), None)
        if future is not None and not future.done():
            future.set_result(answer)

    # -- snapshots ----------------------------------------------------------------------------

    async def request_replicate(self, peer_id: str, tier: MemoryTier | int) -> SyncResult:
        """Ask ``peer_id`` to send this node its whole ``tier`` (bootstrap or repair).

        The request is recorded first: only the snapshot it names is accepted from that peer
        (memrepl.sync.snapshots). Returns when the peer has acknowledged the request; the
        snapshot follows as ordinary batches, applied as they come.
        """
        reg = self.registered(tier)
        batch = self.probe_batch(reg.tier, peer_id, replicate=True)
        with reg.store.read() as conn:
            acked = vectors.acked_cursors(conn, reg.tier).get(peer_id, 0)
        request = self.snapshot_requests.open(
            reg.tier, peer_id, batch.batch_id, acked=acked, now_ns=time.time_ns()
        )
        answer = await self.exchange(peer_id, batch)
        if not isinstance(answer, Ack):
            self.snapshot_requests.close(request)
        return status_result(peer_id, reg.tier, answer)

    async def ask_for_snapshot(self, peer_id: str, tier: MemoryTier) -> None:
        result = await self.request_replicate(peer_id, tier)
        if not result.ok:
            log.warning(
                "asking %s for a snapshot of the %s tier: %s",
                peer_id,
                tier.name.lower(),
                result.error,
            )

    def _start_answer(self, peer_id: str, tier: MemoryTier) -> asyncio.Task[None] | None:
        return self.start_task(self._answer_replicate(peer_id, tier))

    async def _answer_replicate(self, peer_id: str, tier: MemoryTier) -> None:
        reg = self.registered(tier)
        lock = self._locks.setdefault((peer_id, tier), asyncio.Lock())
        async with lock:
            snapshot_id = self.snapshot_answers.take(peer_id, tier)
            if snapshot_id is None:
                return
            result = await SyncRound(self, reg, peer_id, snapshot_id=snapshot_id).run()
        if not result.ok:
            log.warning(
                "snapshot of %s for %s ended %s: %s",
                tier.name,
                peer_id,
                result.status,
                result.error,
            )

    # -- a sync round -----------------------------------------------------------------------

    async def sync_with_peer(self, peer_id: str, tier: MemoryTier | int) -> SyncResult:
        """Bring ``peer_id`` up to date for ``tier``; see the module docstring for the steps.

        Returns a :class:`SyncResult`; a timeout, a NACK or an unreachable peer come back as its
        status (nothing unacknowledged is ever marked synced). A peer below this node's purge
        horizon asks for a snapshot, which this round then sends (``result.snapshot``).
        """
        reg = self.registered(tier)
        lock = self._locks.setdefault((peer_id, reg.tier), asyncio.Lock())
        async with lock:
            started = time.monotonic()
            result = await SyncRound(self, reg, peer_id).run()
            self.observer.round_ended(result, duration_s=time.monotonic() - started)
            return result

    async def exchange(self, peer_id: str, batch: MemorySyncBatch) -> Ack | Nack | SyncStatus:
        """Send one batch and wait for its answer (or a status saying why there is none)."""
        packed = batch.pack(compress_threshold=self.compress_threshold)
        return await self.exchange_packed(peer_id, batch.batch_id, packed, tier=int(batch.tier))

    async def exchange_packed(
        self, peer_id: str, batch_id: str, packed: bytes, *, tier: int = 0
    ) -> Ack | Nack | SyncStatus:
        """:meth:`exchange` of a batch already packed. A NACK is counted in ``sync_refusals``
        (``outbound``: the peer refused this node's batch of ``tier``)."""
        answer = await self.ask(peer_id, batch_id, MessageTypes.VECTOR_SYNC, packed)
        if isinstance(answer, Nack):
            self.record_refusal(peer_id, tier, "outbound", code=answer.code, reason=answer.reason)
        if isinstance(answer, Ack | Nack | SyncStatus):
            return answer
        return SyncStatus.REJECTED  # pragma: no cover - a batch id only ever gets an ACK/NACK

    async def ask(self, peer_id: str, request_id: str, msg_type: MessageTypes, data: bytes) -> Any:
        """Send one message and wait for the answer ``peer_id`` files under ``request_id`` (see
        :meth:`resolve`), or return the status saying why none came."""
        if self.mesh is None:
            raise PeerUnavailableError("sync_with_peer needs a mesh", peer_id=peer_id)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        key = (peer_id, request_id)
        self._waiting[key] = future
        try:
            self.mesh.send(peer_id, msg_type, data)
            return await asyncio.wait_for(future, self.ack_timeout_s)
        except PeerUnavailableError:
            return SyncStatus.UNREACHABLE
        except TimeoutError:
            return SyncStatus.TIMEOUT
        finally:
            self._waiting.pop(key, None)

    async def check_peer(self, peer_id: str) -> CheckResult:
        """One anti-entropy check with ``peer_id``: compare the digests of every registered
        tier and repair what differs (:mod:`memrepl.sync.antientropy`)."""
        if self.antientropy is None:
            raise PeerUnavailableError("an anti-entropy check needs a mesh", peer_id=peer_id)
        return await self.antientropy.check(peer_id)

    def start_task(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        """Run ``coroutine`` as a task this manager tracks (see :meth:`drain`); None (and the
        coroutine closed) without a running event loop."""
        try:
            task = asyncio.get_running_loop().create_task(coroutine)
        except RuntimeError:
            coroutine.close()
            log.warning("asking for or sending a snapshot needs a running event loop")
            return None
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def drain(self) -> None:
        """Wait for the snapshots this manager is sending or asking for in the background."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- tombstones -------------------------------------------------------------------------

    def purge_tombstones(self, tier: MemoryTier | int | None = None) -> int:
        """Delete tombstones every known peer acknowledged longer than the grace period ago.

        Returns how many were deleted. A peer whose cursor is below the new horizon is later
        told so by its rounds' probes, and asks for a snapshot.
        """
        chosen = [self.registered(tier)] if tier is not None else list(self._tiers.values())
        purged = 0
        for reg in chosen:
            with reg.store.write() as conn:
                purged += tombstones.purge(
                    conn, reg.spec, grace_ns=self.tombstone_grace_ns, now_ns=time.time_ns()
                )
        return purged
