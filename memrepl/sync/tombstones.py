"""Tombstone collection: deletes are kept until every known peer has them, then forgotten.

A tombstone may be purged only when its ``modified_at`` is at or below every known peer's
acknowledged cursor for the tier (the minimum of the tier's sync vector) AND older than the grace
period (ARCHITECTURE.md, "Deltas, cursors and sync vectors"). The highest purged ``modified_at`` is
kept per tier in ``tombstone_horizons``: a peer whose cursor is below it may have missed a delete
that no delta can carry any more, so it is answered with a snapshot instead.

A peer counts as known in every tier once it has a sync vector entry in any tier (a sync round
records one as it starts); without an entry in a tier its cursor there is 0, so a peer that is
syncing another tier first does not lose this tier's deletes. With no known peer, nothing holds
tombstones back but the grace period; a peer that appears later starts below the horizon and
gets a snapshot. ``forget_peer`` must drop a peer in every tier to stop it holding any back.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from memrepl.protocol.enums import MemoryTier
from memrepl.storage import digests
from memrepl.storage.backends import backend_of
from memrepl.storage.portable import greatest
from memrepl.storage.schema import TierSpec, sync_vectors, tombstone_horizons
from memrepl.sync.vectors import acked_cursors


def known_peers(conn: Connection) -> set[str]:
    """Every peer with a sync vector entry in any tier."""
    return set(conn.execute(select(sync_vectors.c.peer_id).distinct()).scalars())


def purge(conn: Connection, spec: TierSpec, *, grace_ns: int, now_ns: int) -> int:
    """Delete the tombstones below the tier's safe horizon; return how many (write txn).

    A peer known from any tier but without an acknowledgement in this one holds back every
    tombstone of it (its cursor is 0): it may be about to receive them.
    """
    acked = acked_cursors(conn, spec.tier)
    cutoff = now_ns - grace_ns
    for peer in known_peers(conn):
        cutoff = min(cutoff, acked.get(peer, 0))
    table = spec.table
    doomed = (table.c.deleted.is_(True)) & (table.c.modified_at <= cutoff)
    highest = conn.execute(select(func.max(table.c.modified_at)).where(doomed)).scalar_one()
    if highest is None:
        return 0
    digests.forget_entries(conn, spec.tier, digests.entries_where(conn, spec, doomed))
    deleted = conn.execute(table.delete().where(doomed)).rowcount
    statement = (
        backend_of(conn)
        .insert(tombstone_horizons)
        .values(tier=int(spec.tier), purged_through=highest, updated_at_ns=now_ns)
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["tier"],
            set_={
                "purged_through": greatest(tombstone_horizons.c.purged_through, highest),
                "updated_at_ns": now_ns,
            },
        )
    )
    return int(deleted)


def purged_through(conn: Connection, tier: MemoryTier) -> int:
    """The highest ``modified_at`` of a tombstone collected in ``tier`` (0 if none)."""
    value = conn.execute(
        select(tombstone_horizons.c.purged_through).where(tombstone_horizons.c.tier == int(tier))
    ).scalar_one_or_none()
    return int(value) if value is not None else 0


def pending_tombstones(conn: Connection, spec: TierSpec) -> int:
    """How many tombstones the tier still keeps."""
    table = spec.table
    return int(
        conn.execute(
            select(func.count()).select_from(table).where(table.c.deleted.is_(True))
        ).scalar_one()
    )
