"""Counting what a tier holds and what changed in it: for round totals, status and metrics.

Each function is one aggregate query over a ``Connection``, run in the caller's transaction. They
are not on a hot path (a round counts once, when it begins; ``memrepl status`` and a metrics
scrape count per peer), and their cost follows what they count: the change-stream counts are
index range scans on ``modified_at`` over the rows after a cursor, the echo filter reading those
rows too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from memrepl.storage.schema import TierSpec

__all__ = ["count_since", "live_count", "oldest_since"]


def _since_filter(spec: TierSpec, since_ns: int, exclude_received_from: str | None) -> list[Any]:
    table = spec.table
    conditions: list[Any] = [table.c.modified_at > since_ns]
    if exclude_received_from is not None:
        conditions.append(table.c.received_from.is_distinct_from(exclude_received_from))
    return conditions


def count_since(
    conn: Connection, spec: TierSpec, since_ns: int, *, exclude_received_from: str | None = None
) -> int:
    """How many rows :func:`modified_since` would return without a limit: the changes a peer
    acknowledged up to ``since_ns`` still lacks (an index range count; with the echo filter it
    reads the rows of the range too)."""
    query = select(func.count()).where(*_since_filter(spec, since_ns, exclude_received_from))
    return int(conn.execute(query.select_from(spec.table)).scalar_one())


def oldest_since(
    conn: Connection, spec: TierSpec, since_ns: int, *, exclude_received_from: str | None = None
) -> int | None:
    """The ``modified_at`` of the first row :func:`modified_since` would return (None: none):
    when the oldest change a peer lacks was made here."""
    table = spec.table
    query = select(func.min(table.c.modified_at)).where(
        *_since_filter(spec, since_ns, exclude_received_from)
    )
    value = conn.execute(query).scalar_one()
    return None if value is None else int(value)


def live_count(conn: Connection, spec: TierSpec) -> int:
    """How many live items (not tombstones) the tier holds: a count over the table."""
    table = spec.table
    query = select(func.count()).select_from(table).where(table.c.deleted.is_(False))
    return int(conn.execute(query).scalar_one())
