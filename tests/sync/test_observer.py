"""What a manager tells its observer: rounds with their totals, batches both ways, refusals."""

from __future__ import annotations

from typing import Any

from memrepl.protocol.enums import MemoryTier
from memrepl.storage.items import LocalWrite
from memrepl.sync.observer import SyncObserver
from memrepl.sync.results import SyncResult, SyncStatus

from .conftest import Cluster


class Recorder(SyncObserver):
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def round_started(self, peer_id: str, tier: MemoryTier, **facts: Any) -> None:
        self.calls.append(("round_started", {"peer": peer_id, "tier": tier, **facts}))

    def batch_acked(self, peer_id: str, tier: MemoryTier, **facts: Any) -> None:
        self.calls.append(("batch_acked", {"peer": peer_id, **facts}))

    def batch_rejected(self, peer_id: str, tier: MemoryTier, **facts: Any) -> None:
        self.calls.append(("batch_rejected", {"peer": peer_id, **facts}))

    def round_ended(self, result: SyncResult, *, duration_s: float) -> None:
        assert duration_s >= 0
        self.calls.append(("round_ended", {"status": result.status, "items": result.items}))

    def batch_applied(self, peer_id: str, tier: MemoryTier, **facts: Any) -> None:
        self.calls.append(("batch_applied", {"peer": peer_id, **facts}))

    def batch_refused(self, peer_id: str, tier: MemoryTier | None, **facts: Any) -> None:
        self.calls.append(("batch_refused", {"peer": peer_id, "tier": tier, **facts}))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [facts for call, facts in self.calls if call == name]


async def test_both_sides_hear_of_every_batch_with_the_items_still_pending(
    cluster: Cluster,
) -> None:
    sender = cluster.add("node-a", max_batch_items=100)
    receiver = cluster.add("node-b")
    sent, received = Recorder(), Recorder()
    sender.observer, receiver.observer = sent, received
    cluster.stores["node-a"].episodic.write_many(
        [LocalWrite.add(f"e{n}", {"n": n}) for n in range(250)]
    )
    result = await sender.sync_with_peer("node-b", MemoryTier.EPISODIC)
    assert result.status is SyncStatus.SYNCED
    (started,) = sent.named("round_started")
    assert started == {"peer": "node-b", "tier": MemoryTier.EPISODIC, "total": 250,
                       "snapshot": False}  # fmt: skip
    assert [b["items"] for b in sent.named("batch_acked")] == [100, 100, 50]
    assert sent.named("round_ended") == [{"status": SyncStatus.SYNCED, "items": 250}]
    applied = received.named("batch_applied")
    # The probe (0 items, nothing announced), then the three data batches counting down.
    assert [(b["items"], b["pending"]) for b in applied] == [
        (0, None), (100, 150), (100, 50), (50, 0)
    ]  # fmt: skip
    assert sum(b["applied"] for b in applied) == 250
    assert applied[-1]["cursor"] is not None

    # An up-to-date round announces nothing to send.
    again = await sender.sync_with_peer("node-b", MemoryTier.EPISODIC)
    assert again.status is SyncStatus.UP_TO_DATE
    assert sent.named("round_started")[-1]["total"] == 0


async def test_a_refused_batch_is_reported_on_both_sides(cluster: Cluster) -> None:
    sender = cluster.add("node-a")
    receiver = cluster.add("node-b")
    sent, received = Recorder(), Recorder()
    sender.observer, receiver.observer = sent, received
    del receiver._tiers[MemoryTier.SEMANTIC]  # the receiver does not serve this tier
    result = await sender.sync_with_peer("node-b", MemoryTier.SEMANTIC)
    assert result.status is SyncStatus.REJECTED
    assert sent.named("batch_rejected") == [{"peer": "node-b", "code": "unknown-tier"}]
    assert received.named("batch_refused") == [
        {"peer": "node-a", "tier": MemoryTier.SEMANTIC, "code": "unknown-tier"}
    ]
