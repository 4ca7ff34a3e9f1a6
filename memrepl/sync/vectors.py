"""Sync vectors and inbound cursors: the durable positions of replication, per tier and peer.

- ``sync_vectors``: the highest local ``modified_at`` a peer has acknowledged. Deltas to that peer
  start after it; the minimum over a tier's peers bounds tombstone collection.
- ``inbound_cursors``: the highest sender cursor applied here, written in the same transaction as
  the batch it comes with, and reported back in every ACK. A sender that crashed before saving an
  ACK learns from it where to resume, so nothing is skipped or applied twice.

Both only move forward (a stale or reordered acknowledgement never moves a position back), except
through :func:`set_acked_cursor`, the seed's explicit ``update_sync_vector``.
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import Column, Table, bindparam, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import BindParameter

from memrepl.protocol.enums import MemoryTier
from memrepl.storage import driver
from memrepl.storage.backends import backend_named
from memrepl.storage.driver import DriverStatement, compile_statement
from memrepl.storage.portable import greatest
from memrepl.storage.schema import inbound_cursors, sync_vectors


@cache
def _select_positions(column: Column[int], backend: str) -> str:
    table = column.table
    assert isinstance(table, Table)
    return compile_statement(
        select(table.c.peer_id, column).where(table.c.tier == bindparam("tier")), backend
    ).sql


def _positions(conn: Connection, column: Column[int], tier: MemoryTier) -> dict[str, int]:
    # Read by every delta and every round: compiled once, run on the driver (storage.driver).
    rows = driver.execute(conn, _select_positions(column, conn.dialect.name), (int(tier),))
    return {peer: cursor for peer, cursor in rows}


@cache
def _upsert_position(column: Column[int], forward_only: bool, backend: str) -> DriverStatement:
    """Insert or update one (tier, peer) position, returning the stored value: it runs with
    every applied batch, so it is compiled once and run on the driver (storage.driver)."""
    table = column.table
    assert isinstance(table, Table)
    cursor: BindParameter[int] = bindparam("cursor")
    statement = (
        backend_named(backend)
        .insert(table)
        .values(
            {"tier": bindparam("tier"), "peer_id": bindparam("peer_id"), column.name: cursor}
            | {"updated_at_ns": bindparam("now_ns")}
        )
    )
    new_value = greatest(column, cursor) if forward_only else cursor
    return compile_statement(
        statement.on_conflict_do_update(
            index_elements=["tier", "peer_id"],
            set_={column.name: new_value, "updated_at_ns": bindparam("now_ns")},
        ).returning(column),
        backend,
    )


def _store_position(
    conn: Connection,
    column: Column[int],
    key: tuple[MemoryTier, str],
    cursor: int,
    now_ns: int,
    *,
    forward_only: bool,
) -> int:
    tier, peer_id = key
    upsert = _upsert_position(column, forward_only, conn.dialect.name)
    values = {"tier": int(tier), "peer_id": peer_id, "cursor": cursor, "now_ns": now_ns}
    ((stored,),) = driver.execute(conn, upsert.sql, upsert.parameters(values))
    return int(stored)


def acked_cursors(conn: Connection, tier: MemoryTier) -> dict[str, int]:
    """``{peer: acked cursor}`` for one tier: the seed's ``get_sync_vector``."""
    return _positions(conn, sync_vectors.c.acked_cursor, tier)


def advance_acked_cursor(
    conn: Connection, tier: MemoryTier, peer_id: str, cursor: int, now_ns: int
) -> None:
    """Record that ``peer_id`` acknowledged everything up to ``cursor`` (never moves back)."""
    column = sync_vectors.c.acked_cursor
    _store_position(conn, column, (tier, peer_id), cursor, now_ns, forward_only=True)


def set_acked_cursor(
    conn: Connection, tier: MemoryTier, peer_id: str, cursor: int, now_ns: int
) -> None:
    """Set a peer's acknowledged cursor to exactly ``cursor`` (may move it back: resend)."""
    column = sync_vectors.c.acked_cursor
    _store_position(conn, column, (tier, peer_id), cursor, now_ns, forward_only=False)


def forget_peer(conn: Connection, tier: MemoryTier, peer_id: str) -> None:
    """Drop a peer from a tier's sync vector (it no longer holds back tombstone collection)."""
    conn.execute(
        sync_vectors.delete().where(
            (sync_vectors.c.tier == int(tier)) & (sync_vectors.c.peer_id == peer_id)
        )
    )


def applied_cursors(conn: Connection, tier: MemoryTier) -> dict[str, int]:
    """``{peer: applied cursor}`` for one tier."""
    return _positions(conn, inbound_cursors.c.applied_cursor, tier)


def applied_cursor(conn: Connection, tier: MemoryTier, peer_id: str) -> int:
    """The highest cursor of ``peer_id``'s batches applied here (0 if none)."""
    value = conn.execute(
        select(inbound_cursors.c.applied_cursor).where(
            (inbound_cursors.c.tier == int(tier)) & (inbound_cursors.c.peer_id == peer_id)
        )
    ).scalar_one_or_none()
    return int(value) if value is not None else 0


def advance_applied_cursor(
    conn: Connection, tier: MemoryTier, peer_id: str, cursor: int, now_ns: int
) -> int:
    """Record a sender cursor applied here (never moves back); return the stored value."""
    column = inbound_cursors.c.applied_cursor
    return _store_position(conn, column, (tier, peer_id), cursor, now_ns, forward_only=True)
