"""What a sync manager reports while it works: :class:`SyncObserver`.

A :class:`~memrepl.sync.manager.MemorySyncManager` calls its ``observer`` at a few points of
every exchange, on the sending side (a round began, with how many items it expects to send; a
batch was acknowledged or refused; the round ended) and on the receiving side (a batch was applied
or refused). A running node turns these calls into progress logs, metrics and ``memrepl status``
(:mod:`memrepl.node.monitor`); the default observer does nothing.

The rules that keep it right: the calls are per batch or per round, never per item, so observing
costs nothing a sync would notice; they are made on the manager's thread (the node's event loop),
after the fact they report, and an observer must not raise -- the manager does not guard the
exchange against its observer.
"""

from __future__ import annotations

from memrepl.protocol.enums import MemoryTier
from memrepl.sync.results import SyncResult

__all__ = ["SyncObserver"]


class SyncObserver:
    """The calls a manager makes; every method here does nothing (subclass what you need)."""

    def round_started(self, peer_id: str, tier: MemoryTier, *, total: int, snapshot: bool) -> None:
        """A round to ``peer_id`` began: ``total`` items to send (counted as it began; writes
        during the round may add more), as a snapshot or a delta."""

    def batch_acked(
        self, peer_id: str, tier: MemoryTier, *, items: int, applied: int, conflicts: int
    ) -> None:
        """``peer_id`` acknowledged a batch of ``items`` items (``applied`` of them changed its
        state, ``conflicts`` concurrent versions it logged)."""

    def batch_rejected(self, peer_id: str, tier: MemoryTier, *, code: str) -> None:
        """``peer_id`` refused a batch this node sent (NACK ``code``)."""

    def round_ended(self, result: SyncResult, *, duration_s: float) -> None:
        """A round ended (``result.status`` says how) after ``duration_s`` seconds."""

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
        """A batch of ``items`` from ``peer_id`` was applied here (committed): ``applied`` changed
        local state, ``conflicts`` were logged; ``cursor`` is the sender's position it reached and
        ``pending`` how many more items the sender announced for this round (None: not said)."""

    def batch_refused(self, peer_id: str, tier: MemoryTier | None, *, code: str) -> None:
        """A batch from ``peer_id`` was refused here with NACK ``code`` (``tier`` None when the
        batch could not be read)."""
