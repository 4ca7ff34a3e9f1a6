"""``MemorySyncManager``: the seed's sync manager, over durable tiers and any ``Mesh``.

It owns no state of its own but the open snapshot requests: sync vectors, inbound cursors, the
conflict log, the record of forgotten items and refusals, and the clock live in the database of
the tiers registered with it, so a restarted manager carries on where the last one stopped. Each
incoming batch is applied in ONE write transaction with its bookkeeping; each outgoing batch is
marked synced only when its ACK arrives.

The exchange, for one tier (ARCHITECTURE.md, "Deltas, cursors and sync vectors"; the steps are
the state machine :class:`~memrepl.sync.rounds.SyncRound`, run by
:class:`~memrepl.sync.driver.RoundDriver`):

1. the sender opens with an empty VECTOR_SYNC batch (the probe) carrying its purge horizon; the
   ACK reports the receiver's durable inbound cursor, which is where the sender resumes (even if
   it lost its own bookkeeping);
2. a receiver whose cursor is below that horizon may have missed deletes no delta can carry any
   more: it asks for a snapshot (a REPLICATE request), and the sender answers with the tier's
   whole state (memrepl.sync.snapshots, memrepl.sync.answers); nothing else ever sends one;
3. otherwise the sender sends batches of at most ``max_batch_items`` in ``modified_at`` order,
   each acknowledged before the next, recording the acknowledged cursor in the sync vector
   (every 16 batches and when the round ends), until nothing is left. A batch whose connection
   is lost before its ACK goes out again on the next one.

Every batch the manager sends is made by one :class:`~memrepl.sync.builder.BatchBuilder`.

What a peer's input can do here (the incoming path, :meth:`MemorySyncManager.handle_sync`): every
message gets an ACK or a NACK with a stable code, never a traceback. A batch moves only its own
sender's inbound cursor, and only to a cursor that can be a stamp of the sender's clock; snapshot
batches are accepted only inside a snapshot this node asked for; an ACK or NACK settles only a
batch sent to the peer it came from. Refusals are counted per peer in ``sync_refusals``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from memrepl.errors import (
    BatchTooLargeError,
    NodeIdMismatchError,
    PeerUnavailableError,
    ProtocolError,
    UnknownTierError,
)
from memrepl.protocol.batch import MemorySyncBatch
from memrepl.protocol.enums import MemoryTier, MessageTypes
from memrepl.protocol.limits import MAX_BATCH_ITEMS
from memrepl.storage.store import resolve_tier
from memrepl.storage.tiers import Tier
from memrepl.sync import tombstones, vectors
from memrepl.sync.answers import SnapshotAnswers
from memrepl.sync.antientropy import AntiEntropy, CheckResult
from memrepl.sync.awaiting import Awaiting
from memrepl.sync.batches import read_delta
from memrepl.sync.builder import REPLICATE_ITEM_ID, BatchBuilder
from memrepl.sync.driver import RoundDriver, RoundOptions
from memrepl.sync.messages import Ack, Nack
from memrepl.sync.observer import SyncObserver
from memrepl.sync.push import BatchPush
from memrepl.sync.receiver import BatchReceiver
from memrepl.sync.refusals import Direction, record_refusal
from memrepl.sync.results import SyncResult
from memrepl.sync.round_events import Done
from memrepl.sync.rounds import SyncRound
from memrepl.sync.snapshots import SnapshotRequests
from memrepl.sync.transport import Mesh
from memrepl.sync.worker import StoreWorker

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_ITEMS = 100
DEFAULT_ACK_TIMEOUT_S = 30.0
#: How long a tombstone outlives the last acknowledgement before it may be collected.
DEFAULT_TOMBSTONE_GRACE_S = 24 * 3600.0

__all__ = [
    "DEFAULT_ACK_TIMEOUT_S",
    "DEFAULT_MAX_BATCH_ITEMS",
    "DEFAULT_TOMBSTONE_GRACE_S",
    "REPLICATE_ITEM_ID",
    "MemorySyncManager",
]


class MemorySyncManager:
    """Coordinates synchronization of the registered tiers with peers (the seed's API).

    ``mesh`` may be None for batch-level use (``create_delta_batch``/``apply_sync_batch``);
    ``sync_with_peer`` needs one. With a mesh, the manager answers VECTOR_SYNC batches on its
    own: it applies them and replies ACK or NACK. ``tombstone_grace_s`` also bounds what a
    snapshot may make this node forget (memrepl.sync.snapshots): give every node of a cluster
    the same. ``round_options`` set how rounds wait and read (memrepl.sync.driver: read-ahead,
    the lost-peer rule; a node turns both on). With ``store_worker``, incoming batches are
    committed in that worker's thread, in turn per peer, so the event loop stays free while
    they commit (memrepl.sync.worker; a node does this); ``handle_sync`` is unchanged.
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
        round_options: RoundOptions | None = None,
        store_worker: StoreWorker | None = None,
    ) -> None:
        if not 1 <= max_batch_items <= MAX_BATCH_ITEMS:
            raise BatchTooLargeError(
                f"max_batch_items must be 1..{MAX_BATCH_ITEMS}, not {max_batch_items}",
                limit=MAX_BATCH_ITEMS,
            )
        self.node_id = node_id
        self.mesh = mesh
        self.max_batch_items = max_batch_items
        self._ack_timeout_s = ack_timeout_s
        self.tombstone_grace_ns = int(tombstone_grace_s * 1e9)
        self.compress_threshold = compress_threshold
        #: Told about every round and batch, both ways (a node's monitor; by default nothing).
        self.observer = SyncObserver()
        #: Makes every batch this manager sends (memrepl.sync.builder).
        self.builder = BatchBuilder(node_id, max_batch_items, compress_threshold)
        self._tiers: dict[MemoryTier, Tier] = {}
        # Answers awaited (an Ack or Nack, or a digest answer), by (peer, batch or query id):
        # only the peer asked can settle one; a lost connection settles those on it.
        self._awaiting = Awaiting()
        self._locks: dict[tuple[str, MemoryTier], asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()
        #: The snapshots this node asked peers for (memrepl.sync.snapshots).
        self.snapshot_requests = SnapshotRequests()
        #: The REPLICATE requests peers sent this node (memrepl.sync.answers).
        self.snapshot_answers = SnapshotAnswers(self._start_answer)
        self._receiver = BatchReceiver(self)
        #: The thread incoming batches are committed in (None: on the caller's thread).
        self.store_worker = store_worker
        if mesh is not None:
            if mesh.node_id != node_id:
                raise NodeIdMismatchError(
                    f"mesh endpoint is {mesh.node_id!r}, manager is {node_id!r}",
                    stored=mesh.node_id,
                    requested=node_id,
                )
            if store_worker is None:
                mesh.register_handler(MessageTypes.VECTOR_SYNC, self.handle_sync)
            else:
                handler = functools.partial(self._receiver.handle_in, store_worker)
                mesh.register_handler(MessageTypes.VECTOR_SYNC, handler)
            mesh.register_handler(MessageTypes.ACK, self._on_ack)
            mesh.register_handler(MessageTypes.NACK, self._on_nack)
            self._awaiting.watch(mesh)
            self._driver: RoundDriver | None = RoundDriver(
                mesh,
                self._awaiting,
                self.snapshot_answers,
                ack_timeout_s=ack_timeout_s,
                max_batch_items=max_batch_items,
                on_refused=self._refused,
                options=round_options,
            )
            self.antientropy: AntiEntropy | None = AntiEntropy(self)
        else:
            self._driver = None
            self.antientropy = None

    @property
    def ack_timeout_s(self) -> float:
        """How long a round waits for a peer's answer; settable, and the round driver follows."""
        return self._ack_timeout_s

    @ack_timeout_s.setter
    def ack_timeout_s(self, value: float) -> None:
        self._ack_timeout_s = value
        if self._driver is not None:
            self._driver.ack_timeout_s = value

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
        return self.builder.delta(
            reg.tier, target_node, delta, sync_vector=vector, whole_state=snapshot
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
        if replicate:
            return self.builder.replicate_request(tier, target)
        return self.builder.probe(tier, target, purge_horizon=purge_horizon)

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
        self._awaiting.resolve(peer_id, request_id, answer)

    def _refused(self, peer_id: str, tier: int, code: str, reason: str) -> None:
        self.record_refusal(peer_id, tier, "outbound", code=code, reason=reason)

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
        result = (await self.push(peer_id, reg.tier, [batch])).result
        if not result.ok:
            self.snapshot_requests.close(request)
        return result

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
            result = await self._round(reg, peer_id, snapshot_id)
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
            result = await self._round(reg, peer_id)
            self.observer.round_ended(result, duration_s=time.monotonic() - started)
            return result

    async def _round(self, reg: Tier, peer_id: str, snapshot_id: str | None = None) -> SyncResult:
        machine = SyncRound(
            peer_id,
            reg.tier,
            self.builder,
            snapshot_id=snapshot_id,
            ack_timeout_s=self.ack_timeout_s,
            observer=self.observer,
        )
        return (await self._require_driver(peer_id).run(machine, reg)).result

    async def push(
        self, peer_id: str, tier: MemoryTier, batches: Sequence[MemorySyncBatch]
    ) -> Done:
        """Send ready-made batches (made by :attr:`builder`) one after another, each
        acknowledged before the next (:class:`~memrepl.sync.rounds.BatchPush`); ends at the
        first one refused or unanswered. Its result, and the bytes sent."""
        machine = BatchPush(peer_id, tier, self.builder, list(batches))
        return await self._require_driver(peer_id).run(machine)

    async def ask(self, peer_id: str, request_id: str, msg_type: MessageTypes, data: bytes) -> Any:
        """Send one message and wait for the answer ``peer_id`` files under ``request_id`` (see
        :meth:`resolve`), or return the :class:`~memrepl.sync.awaiting.NoAnswer` saying why
        none came."""
        if self.mesh is None:
            raise PeerUnavailableError("sync_with_peer needs a mesh", peer_id=peer_id)
        return await self._awaiting.ask(
            self.mesh, peer_id, request_id, msg_type, data, timeout_s=self.ack_timeout_s
        )

    def drain_answers(self, grace_s: float) -> None:
        """From now on wait at most ``grace_s`` for any answer (a node stopping: it never
        waits long on a connection that may be dead)."""
        self._awaiting.drain(grace_s)

    def _require_driver(self, peer_id: str) -> RoundDriver:
        if self._driver is None:
            raise PeerUnavailableError("sync_with_peer needs a mesh", peer_id=peer_id)
        return self._driver

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
