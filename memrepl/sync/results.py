"""What a sync round reports back to its caller."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

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


def result_to_json(result: SyncResult) -> dict[str, Any]:
    """A result as a JSON object (``memrepl sync --json``, the control channel): the fields,
    the tier by name, the status by value, and ``ok``."""
    data = asdict(result)
    data["tier"] = result.tier.name.lower()
    data["status"] = result.status.value
    data["ok"] = result.ok
    return data


def result_from_json(data: dict[str, Any]) -> SyncResult:
    """The result :func:`result_to_json` made (ValueError, KeyError or TypeError if it is not)."""
    return SyncResult(
        peer_id=str(data["peer_id"]),
        tier=MemoryTier[str(data["tier"]).upper()],
        status=SyncStatus(data["status"]),
        batches=int(data["batches"]),
        items=int(data["items"]),
        applied=int(data["applied"]),
        conflicts=int(data["conflicts"]),
        cursor=int(data["cursor"]),
        snapshot=bool(data["snapshot"]),
        error=None if data["error"] is None else str(data["error"]),
    )
