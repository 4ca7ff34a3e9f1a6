"""The small JSON messages of the sync exchange, besides the batches themselves.

A sync batch travels as a VECTOR_SYNC message whose data is ``batch.pack()`` (PROTOCOL.md
section 5). The receiver answers each batch with an ACK or a NACK whose data is a JSON object:

- ACK: ``{"batch_id", "tier", "cursor", "applied", "conflicts"}``, where ``cursor`` is the highest
  sender cursor the receiver has applied for that tier (its durable inbound cursor), so a sender
  that lost its own bookkeeping resumes from what the receiver really holds;
- NACK: ``{"batch_id", "code", "reason"}``, ``code`` being the refusing error's stable name.

Decoding is strict: anything else -- including an ACK integer outside ``0 .. 2**63 - 1`` --
raises :class:`~memrepl.errors.ProtocolError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

from memrepl.errors import ProtocolError

T = TypeVar("T")

#: The largest integer an ACK may carry: stamps and counts are stored as signed 64-bit.
MAX_ACK_INTEGER = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Ack:
    """A batch was applied (or was already applied)."""

    batch_id: str
    tier: int
    cursor: int
    applied: int
    conflicts: int

    def encode(self) -> bytes:
        return json.dumps(
            {
                "batch_id": self.batch_id,
                "tier": self.tier,
                "cursor": self.cursor,
                "applied": self.applied,
                "conflicts": self.conflicts,
            }
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> Ack:
        obj = _object(data, "ACK")
        return cls(
            batch_id=_field(obj, "batch_id", str, "ACK"),
            tier=_count(obj, "tier"),
            cursor=_count(obj, "cursor"),
            applied=_count(obj, "applied"),
            conflicts=_count(obj, "conflicts"),
        )


@dataclass(frozen=True, slots=True)
class Nack:
    """A batch was refused, whole; ``code`` names the fault."""

    batch_id: str
    code: str
    reason: str

    def encode(self) -> bytes:
        return json.dumps(
            {"batch_id": self.batch_id, "code": self.code, "reason": self.reason}
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> Nack:
        obj = _object(data, "NACK")
        return cls(
            batch_id=_field(obj, "batch_id", str, "NACK"),
            code=_field(obj, "code", str, "NACK"),
            reason=_field(obj, "reason", str, "NACK"),
        )


def _object(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"{what}: not UTF-8 JSON ({exc})", code="bad-message") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what}: expected a JSON object", code="bad-message")
    return obj


def _count(obj: dict[str, Any], key: str) -> int:
    """An ACK's integer field: 0 .. 2**63 - 1 (a stamp or a count SQLite can hold)."""
    value = _field(obj, key, int, "ACK")
    if not 0 <= value <= MAX_ACK_INTEGER:
        raise ProtocolError(f"ACK: {key!r} {value} is not in 0..2**63-1", code="bad-message")
    return value


def _field(obj: dict[str, Any], key: str, kind: type[T], what: str) -> T:
    value = obj.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(f"{what}: {key!r} must be {kind.__name__}", code="bad-message")
    return value
