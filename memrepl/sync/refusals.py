"""The record of refused batches, per peer: what ``memrepl status`` shows about trouble.

A refusal is a NACK, in either direction: ``inbound`` -- this node refused a batch the peer sent
(a stamp or cursor too far ahead, a snapshot it did not ask for, a malformed state...);
``outbound`` -- the peer refused one of this node's batches (for a fast clock here, that is how
this node learns of it while its own wall clock still looks right to it). One row per peer, tier
(0 when the batch could not be read far enough to say), direction and code, counted, with the
latest reason and, for clock trouble, how far ahead the refused stamp was.

The rules that keep it right: recording is best effort and never changes the answer. The NACK
goes out first; the row is written in a transaction of its own, and a failure to write it is
logged, not raised (a refusal must not turn into a traceback on the peer's input). And the table
stays small whatever a peer sends: the code of an ``outbound`` refusal is the peer's word, so a
peer has at most :data:`MAX_CODES` codes per tier and direction; a refusal under any further
code is counted under :data:`OTHER_CODE`, its reason starting with the code the peer gave.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from memrepl.storage.backends import backend_of
from memrepl.storage.schema import sync_refusals

Direction = Literal["inbound", "outbound"]

#: Reasons are kept to this many characters (a peer chooses the text of its NACKs).
MAX_REASON_CHARS = 500
#: Distinct codes kept per peer, tier and direction; later ones are counted under OTHER_CODE.
MAX_CODES = 32
OTHER_CODE = "other"


@dataclass(frozen=True, slots=True)
class Refusal:
    """One row of ``sync_refusals``."""

    peer_id: str
    tier: int
    direction: str
    code: str
    reason: str
    count: int
    first_at_ns: int
    last_at_ns: int
    ahead_ns: int | None


def record_refusal(
    conn: Connection,
    *,
    peer_id: str,
    tier: int,
    direction: Direction,
    code: str,
    reason: str,
    now_ns: int,
    ahead_ns: int | None = None,
) -> None:
    """Count one refusal (in the caller's write transaction)."""
    code = code[:MAX_REASON_CHARS]
    if _codes_full(conn, peer_id, tier, direction, code):
        reason = f"{code}: {reason}"
        code = OTHER_CODE
    values = {
        "peer_id": peer_id,
        "tier": tier,
        "direction": direction,
        "code": code,
        "reason": reason[:MAX_REASON_CHARS],
        "count": 1,
        "first_at_ns": now_ns,
        "last_at_ns": now_ns,
        "ahead_ns": ahead_ns,
    }
    statement = backend_of(conn).insert(sync_refusals).values(values)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["peer_id", "tier", "direction", "code"],
            set_={
                "reason": statement.excluded.reason,
                "count": sync_refusals.c.count + 1,
                "last_at_ns": statement.excluded.last_at_ns,
                "ahead_ns": func.coalesce(statement.excluded.ahead_ns, sync_refusals.c.ahead_ns),
            },
        )
    )


def _codes_full(conn: Connection, peer_id: str, tier: int, direction: str, code: str) -> bool:
    """Whether ``code`` would be one more than :data:`MAX_CODES` for the peer, tier and
    direction (a code it already has, and :data:`OTHER_CODE`, never are)."""
    table = sync_refusals
    mine = (table.c.peer_id == peer_id) & (table.c.tier == tier) & (table.c.direction == direction)
    if code == OTHER_CODE or conn.execute(select(1).where(mine & (table.c.code == code))).first():
        return False
    others = select(func.count()).select_from(table).where(mine & (table.c.code != OTHER_CODE))
    return int(conn.execute(others).scalar_one()) >= MAX_CODES


def refusals(conn: Connection) -> list[Refusal]:
    """Every refusal row, latest first."""
    table = sync_refusals
    rows = conn.execute(
        select(
            table.c.peer_id,
            table.c.tier,
            table.c.direction,
            table.c.code,
            table.c.reason,
            table.c.count,
            table.c.first_at_ns,
            table.c.last_at_ns,
            table.c.ahead_ns,
        ).order_by(table.c.last_at_ns.desc(), table.c.peer_id)
    ).all()
    return [Refusal(*row) for row in rows]
