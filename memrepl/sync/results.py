"""What a sync round reports back to its caller."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from memrepl.protocol.enums import MemoryTier
from memrepl.sync.messages import Ack, Nack


class SyncStatus(StrEnum):
    """How a sync round ended."""

    #: Batches were sent and every one was acknowledged; the peer is caught up.
    SYNCED = "synced"
    #: Nothing to send: the peer already held everything.
    UP_TO_DATE = "up-to-date"
    #: A batch got no ACK in time; the sync vector stops at the last acknowledged batch.
    TIMEOUT = "timeout"
    #: The peer answered NACK; ``error`` holds its code and reason.
    REJECTED = "rejected"
    #: The mesh has no connection to the peer.
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class SyncResult:
    """The outcome of :meth:`MemorySyncManager.sync_with_peer`.

    ``cursor`` is the local ``modified_at`` the peer has acknowledged (its new sync vector entry);
    ``applied`` and ``conflicts`` add up what the peer reported in its ACKs.
    """

    peer_id: str
    tier: MemoryTier
    status: SyncStatus
    batches: int = 0
    items: int = 0
    applied: int = 0
    conflicts: int = 0
    cursor: int = 0
    snapshot: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the peer is now caught up."""
        return self.status in (SyncStatus.SYNCED, SyncStatus.UP_TO_DATE)


def status_result(peer_id: str, tier: MemoryTier, answer: Ack | Nack | SyncStatus) -> SyncResult:
    """The result of a one-message exchange: its ACK, its NACK, or why there was no answer."""
    if isinstance(answer, Ack):
        return SyncResult(peer_id, tier, SyncStatus.SYNCED, cursor=answer.cursor)
    if isinstance(answer, Nack):
        return SyncResult(
            peer_id, tier, SyncStatus.REJECTED, error=f"{answer.code}: {answer.reason}"
        )
    return SyncResult(peer_id, tier, answer, error=f"peer {peer_id!r}: {answer.value}")
