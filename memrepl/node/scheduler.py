"""The scheduler of ARCHITECTURE.md "Priority-based replication": what to send, to whom, when.

Per tier: URGENT writes are pushed to every connected peer at once; HIGH writes within
``high_delay_s``; everything else in the background round (every ``sync_interval_s``, every tier
with every connected peer). A peer that connects gets a catch-up round (or, when it asked for one
because its tier is empty, the snapshot it asked for); with ``bootstrap_replicate``, an empty
local tier asks the first peer it meets for a snapshot (REPLICATE). Tombstones are purged every
``purge_interval_s``; that and the memory policies run in the store worker (memrepl.sync.worker),
off the event loop.

**Seeing writes.** A commit of this process wakes the scheduler at once (the store's after-commit
hook); commits of other processes on the same file are seen by a poll every ``poll_interval_s``
(:mod:`memrepl.node.watch`: one pragma when nothing changed, one index range scan per tier when
something did). An URGENT or HIGH change also hurries on to the next hop -- but never back to the
peer it came from: that round would carry only echoes.

**The rules that keep it right.**

- Only the sync manager moves cursors. The URGENT fast path sends the URGENT rows as batches
  WITHOUT a cursor (the manager's batch builder makes them, its push sends them): the peer
  applies them (idempotently) but nobody's cursor moves, and the next ordinary round sends them
  again as part of the delta (a duplicate: no change, no conflict). So the fast path can never
  skip anything, and it never waits behind a long background transfer.
- At most one round per (peer, tier) runs at a time; a trigger during a round reruns it after.
- Cancelling a round is always safe (a batch is applied in one transaction on the receiver, and
  acknowledged cursors are only saved after the ACK), so a round for a peer that disconnected is
  cancelled and started afresh when the peer is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from memrepl.errors import MemreplError
from memrepl.node.config import NodeSettings
from memrepl.node.repair import RepairSchedule
from memrepl.node.watch import CommitProbe, poll_tier, silent_peers, urgent_rows
from memrepl.policy import ConsolidationResult, consolidate
from memrepl.protocol.enums import MemoryTier, SyncPriority
from memrepl.storage.items import max_modified_at
from memrepl.storage.records import StoredItem
from memrepl.storage.store import Store
from memrepl.sync.batches import to_wire
from memrepl.sync.manager import MemorySyncManager
from memrepl.sync.results import SyncResult, SyncStatus
from memrepl.sync.vectors import applied_cursor

__all__ = ["PeerTierStatus", "Scheduler"]

log = logging.getLogger(__name__)

Key = tuple[str, MemoryTier]
#: The store worker's key for the node's own store work (no peer id is empty).
LOCAL_WORK = ""


@dataclass(frozen=True, slots=True)
class PeerTierStatus:
    """Where replication to one peer stands for one tier (what ``Node.status()`` returns)."""

    peer_id: str
    tier: MemoryTier
    connected: bool
    #: Wall-clock nanoseconds of the last round started / the last one that caught the peer up.
    last_attempt_ns: int | None
    last_success_ns: int | None
    #: The last failure (a status such as ``timeout`` and its reason) and when it happened.
    last_error: str | None
    last_error_ns: int | None
    #: The last round's result.
    last_result: SyncResult | None


@dataclass(slots=True)
class _Track:
    last_attempt_ns: int | None = None
    last_success_ns: int | None = None
    last_error: str | None = None
    last_error_ns: int | None = None
    last_result: SyncResult | None = None


class Scheduler:
    """Runs the rounds of one node; :class:`~memrepl.node.Node` starts and stops it.

    ``peers`` returns the peers currently connected (the mesh's ``peers()``).
    """

    def __init__(
        self,
        store: Store,
        manager: MemorySyncManager,
        peers: Callable[[], list[str]],
        settings: NodeSettings,
    ) -> None:
        self.store = store
        self.manager = manager
        self.settings = settings
        self._peers = peers
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id = 0
        self._main: asyncio.Task[None] | None = None
        self._last_seen: dict[MemoryTier, int] = {}
        self._high_due: dict[Key, float] = {}
        self._connected: set[str] = set()
        self._catch_up_due: dict[str, float] = {}
        self._asked_replicate: dict[str, set[MemoryTier]] = {}
        self._bootstrapped: set[MemoryTier] = set()
        self._rounds: dict[Key, asyncio.Task[SyncResult]] = {}
        self._again: set[Key] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._track: dict[Key, _Track] = {}
        self._next_round = self._next_purge = 0.0
        self._next_consolidate = math.inf
        self._policy_cursor: int | None = None
        self._stopping = False
        self._probe: CommitProbe | None = None
        #: Anti-entropy: digest checks with the peers, verification of this node's digests.
        self.repair = RepairSchedule(
            manager,
            lambda: sorted(self._connected),
            check_interval_s=settings.antientropy_interval_s,
            verify_interval_s=settings.verify_interval_s,
        )

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop (in the running event loop); writes already in the store count as seen."""
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        self._probe = CommitProbe(self.store)
        with self.store.read() as conn:
            for tier in self.manager.tiers:
                self._last_seen[tier] = max_modified_at(conn, self.store.tier(tier).spec)
        now = time.monotonic()
        self._next_round = now + self.settings.sync_interval_s
        self._next_purge = now + self.settings.purge_interval_s
        if self.settings.consolidate_interval_s is not None:
            self._next_consolidate = now + self.settings.consolidate_interval_s
        if self.settings.scheduler:
            self.repair.start(now)
            self._main = asyncio.create_task(self._run(), name="memrepl-scheduler")

    async def stop(self) -> None:
        """Stop scheduling; wait up to ``stop_timeout_s`` for the rounds in hand, then cancel."""
        self._stopping = True
        if self._main is not None:
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
            self._main = None
        await self.repair.stop()
        pending: list[asyncio.Task[Any]] = [*self._rounds.values(), *self._tasks]
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.settings.stop_timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._again.clear()
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    def wake(self) -> None:
        """Look at the database now (safe to call from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._thread_id:
            # On the next loop turn: a commit of an applied batch comes with an ACK that is
            # already queued; the ACK goes out before the scheduler looks at the database.
            loop.call_soon(self._wake.set)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake.set)

    def replicate_requested(self, peer_id: str, tier: MemoryTier) -> None:
        """``peer_id`` asked for a snapshot of ``tier``: that replaces its catch-up round."""
        self._asked_replicate.setdefault(peer_id, set()).add(tier)

    # -- asking for rounds ---------------------------------------------------------------------

    async def sync_now(
        self, peers: Iterable[str] | None = None, tiers: Iterable[MemoryTier] | None = None
    ) -> list[SyncResult]:
        """Run a round with each peer (default: the connected ones) for each tier; the results."""
        chosen = [
            (peer, tier)
            for peer in (self._peers() if peers is None else list(peers))
            for tier in (self.manager.tiers if tiers is None else list(tiers))
        ]
        return list(await asyncio.gather(*(self._sync(peer, tier) for peer, tier in chosen)))

    def trigger(self, peer_id: str, tier: MemoryTier) -> None:
        """Start a round with ``peer_id`` for ``tier`` (or rerun it after the one running)."""
        if self._stopping:
            return
        key = (peer_id, tier)
        running = self._rounds.get(key)
        if running is not None and not running.done():
            self._again.add(key)
            return
        task = asyncio.create_task(self._sync(peer_id, tier), name=f"memrepl-sync-{peer_id}")
        self._rounds[key] = task
        task.add_done_callback(functools.partial(self._round_done, key))

    def _round_done(self, key: Key, task: asyncio.Task[SyncResult]) -> None:
        if self._rounds.get(key) is task:
            del self._rounds[key]
        if key in self._again and not self._stopping and key[0] in self._connected:
            self._again.discard(key)
            self.trigger(*key)

    async def _sync(self, peer_id: str, tier: MemoryTier) -> SyncResult:
        track = self._track.setdefault((peer_id, tier), _Track())
        track.last_attempt_ns = time.time_ns()
        try:
            result = await self.manager.sync_with_peer(peer_id, tier)
        except MemreplError as exc:
            result = SyncResult(peer_id, tier, SyncStatus.REJECTED, error=str(exc))
        self._record(track, result)
        return result

    def _record(self, track: _Track, result: SyncResult) -> None:
        track.last_result = result
        now = time.time_ns()
        if result.ok:
            track.last_success_ns = now
            if result.applied or result.conflicts or result.snapshot:
                log.info(
                    "%s tier: %d items to %s in %d batches (%d applied, %d conflicts)%s",
                    result.tier.name.lower(),
                    result.items,
                    result.peer_id,
                    result.batches,
                    result.applied,
                    result.conflicts,
                    " as a snapshot" if result.snapshot else "",
                )
        else:
            track.last_error = f"{result.status.value}: {result.error}"
            track.last_error_ns = now
            log.warning(
                "sync of the %s tier with %s: %s",
                result.tier.name.lower(),
                result.peer_id,
                track.last_error,
            )

    def status(self) -> list[PeerTierStatus]:
        """Per peer (connected, or ever synced in this run) and tier, the last outcome."""
        peers = sorted({*self._connected, *(peer for peer, _ in self._track)})
        return [
            PeerTierStatus(
                peer_id=peer,
                tier=tier,
                connected=peer in self._connected,
                last_attempt_ns=track.last_attempt_ns,
                last_success_ns=track.last_success_ns,
                last_error=track.last_error,
                last_error_ns=track.last_error_ns,
                last_result=track.last_result,
            )
            for peer in peers
            for tier in self.manager.tiers
            for track in [self._track.get((peer, tier), _Track())]
        ]

    # -- the loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._next_timeout()):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                self._tick(time.monotonic())
            except Exception:
                # A database that is busy or unreadable for a moment must not end replication.
                log.exception("scheduler: a pass failed; trying again")
                await asyncio.sleep(self.settings.poll_interval_s)

    def _next_timeout(self) -> float:
        deadlines = [
            *self._high_due.values(),
            *self._catch_up_due.values(),
            self._next_round,
            self._next_purge,
            self._next_consolidate,
            self.repair.next_due,
        ]
        until = min(deadlines) - time.monotonic()
        return max(0.0, min(self.settings.poll_interval_s, until))

    def _tick(self, now: float) -> None:
        self._check_peers(now)
        for peer, due in list(self._catch_up_due.items()):
            if now >= due:
                del self._catch_up_due[peer]
                asked = self._asked_replicate.get(peer, set())
                for tier in self.manager.tiers:
                    if tier not in asked:
                        self.trigger(peer, tier)
        self._check_writes(now)
        for key, due in list(self._high_due.items()):
            if now >= due:
                del self._high_due[key]
                if key[0] in self._connected:
                    self.trigger(*key)
        if now >= self._next_round:
            self._next_round = now + self.settings.sync_interval_s
            for peer in self._connected:
                for tier in self.manager.tiers:
                    self.trigger(peer, tier)
        if now >= self._next_purge:
            self._next_purge = now + self.settings.purge_interval_s
            self._spawn(self._local_work("tombstone collection", self._purge))
        if now >= self._next_consolidate:
            assert self.settings.consolidate_interval_s is not None
            self._next_consolidate = now + self.settings.consolidate_interval_s
            self._spawn(self._local_work("the memory policies", self.consolidate))
        self.repair.tick(now)

    def _check_peers(self, now: float) -> None:
        connected = set(self._peers())
        for peer in self._connected - connected:
            log.info("peer %s disconnected: its rounds start again when it is back", peer)
            for (round_peer, _), task in list(self._rounds.items()):
                if round_peer == peer:
                    task.cancel()
            self._catch_up_due.pop(peer, None)
        for peer in sorted(connected - self._connected):
            self._asked_replicate[peer] = set()
            self._catch_up_due[peer] = now + self.settings.catch_up_delay_s
            if self.settings.bootstrap_replicate:
                self._bootstrap(peer)
        self._connected = connected

    def _bootstrap(self, peer_id: str) -> None:
        """Ask ``peer_id`` for a snapshot of each tier that is empty here and never heard of it."""
        with self.store.read() as conn:
            empty = [
                tier
                for tier in self.manager.tiers
                if tier not in self._bootstrapped
                and self._last_seen.get(tier, 0) == 0
                and applied_cursor(conn, tier, peer_id) == 0
            ]
        for tier in empty:
            self._bootstrapped.add(tier)
            log.info("the %s tier is empty: asking %s for a snapshot", tier.name.lower(), peer_id)
            self._spawn(self._request_replicate(peer_id, tier))

    async def _request_replicate(self, peer_id: str, tier: MemoryTier) -> None:
        result = await self.manager.request_replicate(peer_id, tier)
        if not result.ok:
            # Let the next peer that connects (or this one, back) try again.
            self._bootstrapped.discard(tier)
            self._record(self._track.setdefault((peer_id, tier), _Track()), result)

    def _check_writes(self, now: float) -> None:
        if self._probe is not None and not self._probe.changed():
            return
        with self.store.read() as conn:
            news = {
                tier: found
                for tier in self.manager.tiers
                if (found := poll_tier(conn, self.store.tier(tier).spec, self._last_seen[tier]))
            }
        for tier, (latest, sources) in news.items():
            since = self._last_seen[tier]
            self._last_seen[tier] = latest
            top = max(sources.values())
            if top >= SyncPriority.URGENT and self._connected:
                # Each peer gets the URGENT rows that did not come from it.
                self._spawn(self._push_urgent(tier, since, latest))
            for source, priority in sources.items():
                if SyncPriority.HIGH <= priority < SyncPriority.URGENT:
                    for peer in self._connected - {source}:
                        self._high_due.setdefault((peer, tier), now + self.settings.high_delay_s)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push_urgent(self, tier: MemoryTier, since: int, upto: int) -> None:
        """Send the URGENT rows of ``(since, upto]`` to every connected peer, without a cursor."""
        spec = self.store.tier(tier).spec
        with self.store.read() as conn:
            rows = urgent_rows(conn, spec, since, upto)
        await asyncio.gather(*(self._push_to(peer, tier, rows) for peer in self._connected))

    async def _push_to(self, peer_id: str, tier: MemoryTier, rows: list[StoredItem]) -> None:
        items = [to_wire(tier, row) for row in rows if row.received_from != peer_id]
        batches = self.manager.builder.items(tier, peer_id, items)
        result = (await self.manager.push(peer_id, tier, batches)).result
        if not result.ok:
            log.warning(
                "urgent push of the %s tier to %s: %s", tier.name.lower(), peer_id, result.error
            )
            # The ordinary round will carry these items.
            self.trigger(peer_id, tier)

    async def _local_work(self, what: str, work: Callable[[], object]) -> None:
        """Run the node's own store work in the manager's store worker (off the event loop,
        in its own turn between the peers' batches), or here without one."""
        worker = self.manager.store_worker
        try:
            if worker is None:
                work()
            else:
                await worker.run(LOCAL_WORK, work)
        except Exception:
            # A database that is busy or unreadable for a moment must not end the schedule.
            log.exception("scheduler: %s failed; it runs again at its next interval", what)

    def consolidate(self) -> ConsolidationResult:
        """Run the memory policies once (promotion, consolidation, retention); what they wrote
        replicates like any other write."""
        result = consolidate(self.store, since_ns=self._policy_cursor)
        self._policy_cursor = result.cursor
        if result.promoted or result.consolidated or result.forgotten:
            log.info(
                "policies: %d promoted, %d consolidated, %d forgotten",
                len(result.promoted),
                len(result.consolidated),
                len(result.forgotten),
            )
        return result

    def _purge(self) -> None:
        forget_after = self.settings.forget_peer_after_s
        if forget_after is not None:
            self._forget_silent_peers(forget_after)
        purged = self.manager.purge_tombstones()
        if purged:
            log.info("purged %d tombstones", purged)

    def _forget_silent_peers(self, after_s: float) -> None:
        """Drop peers that acknowledged nothing for ``after_s`` from the sync vectors."""
        cutoff = time.time_ns() - int(after_s * 1e9)
        with self.store.read() as conn:
            silent = silent_peers(conn, cutoff)
        for tier, peer in silent:
            if peer not in self._connected and tier in self.manager.tiers:
                log.warning(
                    "forgetting peer %s for the %s tier: silent for over %.0f s (it gets a "
                    "snapshot when it is back)",
                    peer,
                    tier.name.lower(),
                    after_s,
                )
                self.manager.forget_peer(tier, peer)
