"""What a running node watches about its own replication: :class:`NodeMonitor`.

The node's sync manager reports every round and batch, both ways (:class:`SyncObserver`); the
monitor keeps, per peer and tier and per direction, counters that only grow (items, batches,
conflicts, refusals by NACK code, rounds by outcome and their durations: what ``--metrics``
serves) and the progress of the round in hand (what ``memrepl status`` and ``memrepl sync``
show), and it logs a long round's progress at a steady interval, on the sending and on the
receiving side.

The rules that keep it right:

- **Per batch, never per item.** Every call adds a few integers; nothing is computed until
  someone reads (:meth:`flows`, :meth:`progress`).
- **What a receiver knows, it was told.** A sender counts what it has to send when a round
  begins and announces, with each batch, how many items are left after it (``pending``, an
  estimate: writes during the round add more). The receiver's progress is what it applied plus
  the last announcement; it ends when a batch says nothing is left. A receiver that hears
  nothing for :data:`STALLED_AFTER_S` shows its catch-up as stalled (the sender stopped or
  went away), not as progressing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from memrepl.protocol.enums import MemoryTier
from memrepl.sync.observer import SyncObserver
from memrepl.sync.results import SyncResult

__all__ = ["DEFAULT_PROGRESS_INTERVAL_S", "Flow", "NodeMonitor", "Progress", "Snapshot"]

log = logging.getLogger(__name__)

#: A round still running after this long logs its progress, and again every this long.
DEFAULT_PROGRESS_INTERVAL_S = 5.0
#: A receiver's catch-up without a batch for this long is shown as stalled.
STALLED_AFTER_S = 30.0
#: Round durations are counted in these buckets (seconds; Prometheus histogram bounds).
DURATION_BUCKETS_S = (0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0)

SEND, RECEIVE = "send", "receive"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a round in hand looks like at one moment (what progress displays show)."""

    done: int
    total: int
    items_per_s: float
    eta_s: float | None

    def to_json(self) -> dict[str, object]:
        return {
            "done": self.done,
            "total": self.total,
            "items_per_s": self.items_per_s,
            "eta_s": self.eta_s,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Snapshot:
        """Read :meth:`to_json`'s form; ValueError or TypeError for anything else."""
        eta = data.get("eta_s")
        return cls(
            int(data["done"]),  # type: ignore[call-overload]
            int(data["total"]),  # type: ignore[call-overload]
            float(data["items_per_s"]),  # type: ignore[arg-type]
            None if eta is None else float(eta),  # type: ignore[arg-type]
        )


@dataclass(slots=True)
class Progress:
    """One round in hand: a sender's round, or a receiver catching up."""

    started: float
    started_ns: int
    #: Items expected in all (sender: counted at the start; receiver: done + last announced).
    total: int
    done: int = 0
    snapshot: bool = False
    #: When the last batch was acknowledged / applied (monotonic), and when progress was logged.
    updated: float = 0.0
    logged: float = 0.0
    #: Receiver: the sender's position reached (a stamp of its clock).
    cursor: int | None = None

    def rate(self, now: float) -> float:
        """Items per second since the round began."""
        elapsed = now - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def remaining(self) -> int:
        return max(0, self.total - self.done)

    def eta_s(self, now: float) -> float | None:
        """Seconds left at the rate so far (None before anything was done)."""
        rate = self.rate(now)
        return self.remaining() / rate if rate > 0 else None

    def at(self, now: float) -> Snapshot:
        """The round at ``now``: done, total, rate, ETA."""
        eta = self.eta_s(now)
        return Snapshot(
            self.done, self.total, round(self.rate(now), 1), None if eta is None else round(eta, 1)
        )

    def to_json(self, now: float) -> dict[str, Any]:
        eta = self.eta_s(now)
        return {
            "started_at_ns": self.started_ns,
            "total": self.total,
            "done": self.done,
            "remaining": self.remaining(),
            "snapshot": self.snapshot,
            "items_per_s": round(self.rate(now), 1),
            "eta_s": None if eta is None else round(eta, 1),
            "stalled": now - self.updated > STALLED_AFTER_S,
            "cursor": self.cursor,
        }


@dataclass(slots=True)
class Flow:
    """One direction of replication with one peer for one tier: counters and the round."""

    #: Items and batches sent and acknowledged (send) or received and applied (receive).
    items: int = 0
    batches: int = 0
    #: Of those items, how many changed the receiver's state; concurrent versions it logged.
    applied: int = 0
    conflicts: int = 0
    #: Batches refused, by NACK code (send: the peer refused ours; receive: we refused theirs).
    refusals: Counter[str] = field(default_factory=Counter)
    #: Rounds by how they ended, and their durations (send only).
    rounds: Counter[str] = field(default_factory=Counter)
    duration_sum_s: float = 0.0
    duration_buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS_S))
    #: The round in hand, if any.
    progress: Progress | None = None


Key = tuple[str, MemoryTier, str]


class NodeMonitor(SyncObserver):
    """The observer of a node's sync manager; see the module docstring."""

    def __init__(self, node_id: str, *, progress_interval_s: float = DEFAULT_PROGRESS_INTERVAL_S):
        self.node_id = node_id
        self.progress_interval_s = progress_interval_s
        self._flows: dict[Key, Flow] = {}

    def flow(self, peer_id: str, tier: MemoryTier, direction: str) -> Flow:
        """The flow for one peer, tier and direction (``"send"`` or ``"receive"``)."""
        key = (peer_id, tier, direction)
        found = self._flows.get(key)
        if found is None:
            found = self._flows[key] = Flow()
        return found

    def flows(self) -> dict[Key, Flow]:
        """Every flow seen, by (peer, tier, direction) (the live objects: read, do not change)."""
        return dict(self._flows)

    def progress(self, peer_id: str, tier: MemoryTier, direction: str) -> Progress | None:
        """The round in hand for one flow, if any."""
        found = self._flows.get((peer_id, tier, direction))
        return None if found is None else found.progress

    # -- the sending side ----------------------------------------------------------------------

    def round_started(self, peer_id: str, tier: MemoryTier, *, total: int, snapshot: bool) -> None:
        now = time.monotonic()
        self.flow(peer_id, tier, SEND).progress = Progress(
            now, time.time_ns(), total, snapshot=snapshot, updated=now, logged=now
        )

    def batch_acked(
        self, peer_id: str, tier: MemoryTier, *, items: int, applied: int, conflicts: int
    ) -> None:
        flow = self.flow(peer_id, tier, SEND)
        flow.items += items
        flow.batches += 1
        flow.applied += applied
        flow.conflicts += conflicts
        progress = flow.progress
        if progress is not None:
            progress.done += items
            progress.total = max(progress.total, progress.done)
            self._maybe_log(peer_id, tier, SEND, progress)

    def batch_rejected(self, peer_id: str, tier: MemoryTier, *, code: str) -> None:
        self.flow(peer_id, tier, SEND).refusals[code] += 1

    def round_ended(self, result: SyncResult, *, duration_s: float) -> None:
        flow = self.flow(result.peer_id, result.tier, SEND)
        flow.rounds[result.status.value] += 1
        flow.duration_sum_s += duration_s
        for index, bound in enumerate(DURATION_BUCKETS_S):
            if duration_s <= bound:
                flow.duration_buckets[index] += 1
        progress, flow.progress = flow.progress, None
        if progress is not None and duration_s >= self.progress_interval_s:
            now = time.monotonic()
            log.info(
                "sent the %s tier to %s: %s, %d items in %.1f s (%.0f items/s)",
                result.tier.name.lower(),
                result.peer_id,
                result.status.value,
                progress.done,
                duration_s,
                progress.rate(now),
                extra=_fields(
                    "round-ended",
                    (result.peer_id, result.tier, SEND),
                    progress,
                    now,
                    status=result.status.value,
                    duration_s=round(duration_s, 3),
                ),
            )

    # -- the receiving side --------------------------------------------------------------------

    def batch_applied(
        self,
        peer_id: str,
        tier: MemoryTier,
        *,
        items: int,
        applied: int,
        conflicts: int,
        cursor: int | None,
        pending: int | None,
    ) -> None:
        flow = self.flow(peer_id, tier, RECEIVE)
        now = time.monotonic()
        if items:
            flow.items += items
            flow.batches += 1
            flow.applied += applied
            flow.conflicts += conflicts
        progress = flow.progress
        if pending is None:
            return
        if progress is None:
            if not pending:
                return  # a short round: one batch with everything, nothing to show
            progress = flow.progress = Progress(
                now, time.time_ns(), items + pending, updated=now, logged=now
            )
        progress.done += items
        progress.total = progress.done + pending
        progress.updated = now
        progress.cursor = cursor if cursor is not None else progress.cursor
        if pending:
            self._maybe_log(peer_id, tier, RECEIVE, progress)
            return
        flow.progress = None
        if now - progress.started >= self.progress_interval_s:
            log.info(
                "caught up with %s on the %s tier: %d items in %.1f s (%.0f items/s)",
                peer_id,
                tier.name.lower(),
                progress.done,
                now - progress.started,
                progress.rate(now),
                extra=_fields("caught-up", (peer_id, tier, RECEIVE), progress, now),
            )

    def batch_refused(self, peer_id: str, tier: MemoryTier | None, *, code: str) -> None:
        if tier is not None:
            self.flow(peer_id, tier, RECEIVE).refusals[code] += 1

    # -- logging -------------------------------------------------------------------------------

    def _maybe_log(
        self, peer_id: str, tier: MemoryTier, direction: str, progress: Progress
    ) -> None:
        now = time.monotonic()
        progress.updated = now
        if now - progress.logged < self.progress_interval_s:
            return
        progress.logged = now
        eta = progress.eta_s(now)
        share = 100.0 * progress.done / progress.total if progress.total else 100.0
        verb, preposition = ("sending", "to") if direction == SEND else ("receiving", "from")
        log.info(
            "%s the %s tier %s %s: %d of %d items (%.0f%%), %.0f items/s, ETA %s",
            verb,
            tier.name.lower(),
            preposition,
            peer_id,
            progress.done,
            progress.total,
            share,
            progress.rate(now),
            "unknown" if eta is None else f"{eta:.0f} s",
            extra=_fields("round-progress", (peer_id, tier, direction), progress, now),
        )


def _fields(event: str, key: Key, progress: Progress, now: float, **more: Any) -> dict[str, Any]:
    """The structured fields of a progress log line (``--log-format json`` prints them)."""
    peer_id, tier, direction = key
    eta = progress.eta_s(now)
    return {
        "fields": {
            "event": event,
            "peer": peer_id,
            "tier": tier.name.lower(),
            "direction": direction,
            "items_done": progress.done,
            "items_total": progress.total,
            "items_per_s": round(progress.rate(now), 1),
            "eta_s": None if eta is None else round(eta, 1),
            **more,
        }
    }
