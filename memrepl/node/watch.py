"""Seeing commits in a store: what the scheduler polls, and the queries behind it.

A node must notice writes made by any process on its database file -- its own, an application's,
``memrepl put`` -- without scanning tables. Two steps, both cheap:

1. :class:`CommitProbe`: ``PRAGMA data_version`` on a connection kept for it. SQLite changes the
   value whenever ANOTHER connection committed (any process, including this one's other pooled
   connections), so an idle node costs one pragma per poll and nothing else. On PostgreSQL the
   probe reads the node's clock (one row): every write transaction that changes rows saves it
   (:meth:`memrepl.storage.backends.Backend.commit_version`).
2. :func:`poll_tier`, only when something committed, per tier::

       SELECT received_from, max(modified_at), max(priority) FROM <tier>_items
       WHERE modified_at > :last_seen GROUP BY received_from

The rule that keeps it right: ``modified_at`` is indexed and strictly increasing in commit order
across processes (the clock is stored inside every write transaction, ARCHITECTURE.md
"Deltas, cursors and sync vectors"), so step 2 is an index range scan over exactly the rows
committed since the last look, and no commit is ever missed however the polls fall.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.engine import Connection

from memrepl.protocol.enums import MemoryTier, SyncPriority
from memrepl.storage import driver
from memrepl.storage.backends import backend_named
from memrepl.storage.driver import compile_statement
from memrepl.storage.records import StoredItem, item_from_row
from memrepl.storage.schema import TierSpec, sync_vectors
from memrepl.storage.store import Store

__all__ = ["CommitProbe", "poll_tier", "silent_peers", "urgent_rows"]


class CommitProbe:
    """Tells whether any connection committed to the store since the last call."""

    def __init__(self, store: Store) -> None:
        # A pooled connection held for the probe's life (close() gives it back): SQLite's
        # data_version is per connection.
        self._connection: Any = store.engine.raw_connection()
        self._backend = backend_named(store.engine.dialect.name)
        self._version: int | None = None

    def changed(self) -> bool:
        """True on the first call, then whenever another connection committed in between."""
        version = self._backend.commit_version(self._connection)
        changed = version != self._version
        self._version = version
        return changed

    def close(self) -> None:
        self._connection.close()


@cache
def _poll_statement(table: Table, backend: str) -> str:
    # Run after every commit a node sees, its own included: compiled once, run on the driver
    # (memrepl.storage.driver) -- building and executing it through Core cost more than the query.
    return compile_statement(
        select(table.c.received_from, func.max(table.c.modified_at), func.max(table.c.priority))
        .where(table.c.modified_at > bindparam("last_seen"))
        .group_by(table.c.received_from),
        backend,
    ).sql


def poll_tier(
    conn: Any, spec: TierSpec, last_seen: int
) -> tuple[int, dict[str | None, SyncPriority]] | None:
    """The rows committed after ``last_seen``: their highest ``modified_at``, and the highest
    priority among them per source (``received_from``; None: written on this node). None if
    there are none."""
    rows = driver.execute(conn, _poll_statement(spec.table, conn.dialect.name), (last_seen,))
    if not rows:
        return None
    latest = max(int(row[1]) for row in rows)
    return latest, {row[0]: SyncPriority(int(row[2])) for row in rows}


def urgent_rows(conn: Any, spec: TierSpec, since: int, upto: int) -> list[StoredItem]:
    """The URGENT rows committed in ``(since, upto]``, in ``modified_at`` order."""
    table = spec.table
    rows = conn.execute(
        select(table)
        .where(
            (table.c.modified_at > since)
            & (table.c.modified_at <= upto)
            & (table.c.priority >= int(SyncPriority.URGENT))
        )
        .order_by(table.c.modified_at)
    ).mappings()
    return [item_from_row(spec, row) for row in rows]


def silent_peers(conn: Connection, cutoff_ns: int) -> list[tuple[MemoryTier, str]]:
    """``(tier, peer)`` of the sync vector entries not updated since ``cutoff_ns``."""
    rows = conn.execute(
        select(sync_vectors.c.tier, sync_vectors.c.peer_id).where(
            sync_vectors.c.updated_at_ns < cutoff_ns
        )
    )
    return [(MemoryTier(tier), str(peer)) for tier, peer in rows]
