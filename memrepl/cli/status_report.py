"""What ``memrepl status`` reads from a store: per tier, what it holds; per tier and peer, where
replication stands (the heavy half of :mod:`memrepl.cli.status_cmds`, imported when it runs).

Everything is read in ONE read transaction (a consistent snapshot) from the tables
ARCHITECTURE.md calls plain and queryable: the tier tables, ``sync_vectors``,
``inbound_cursors``, ``tombstone_horizons`` and ``conflicts``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from memrepl.errors import CommandError
from memrepl.storage.items import max_modified_at
from memrepl.storage.schema import TierSpec, conflicts
from memrepl.sync import tombstones, vectors

NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """Replication towards and from one peer, for one tier (see the module docstring)."""

    tier: str
    peer_id: str
    acked_cursor: int | None
    items_behind: int
    seconds_behind: float | None
    inbound_cursor: int | None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class TierStatus:
    """What one tier holds (see the module docstring)."""

    tier: str
    items: int
    tombstones: int
    conflicts: int
    latest_modified_at: int
    purged_through: int


def _count(conn: Connection, query: Any) -> int:
    return int(conn.execute(query).scalar_one())


def tier_status(conn: Connection, spec: TierSpec) -> TierStatus:
    """The :class:`TierStatus` of one tier."""
    table = spec.table
    live = select(func.count()).select_from(table).where(table.c.deleted.is_(False))
    logged = select(func.count()).select_from(conflicts).where(conflicts.c.tier == int(spec.tier))
    return TierStatus(
        tier=spec.tier.name.lower(),
        items=_count(conn, live),
        tombstones=tombstones.pending_tombstones(conn, spec),
        conflicts=_count(conn, logged),
        latest_modified_at=max_modified_at(conn, spec),
        purged_through=tombstones.purged_through(conn, spec.tier),
    )


def peer_statuses(conn: Connection, spec: TierSpec, latest: int) -> list[PeerStatus]:
    """The :class:`PeerStatus` of every peer known for one tier, by peer id."""
    acked = vectors.acked_cursors(conn, spec.tier)
    inbound = vectors.applied_cursors(conn, spec.tier)
    table = spec.table
    found = []
    for peer in sorted(set(acked) | set(inbound)):
        cursor = acked.get(peer)
        behind = _count(
            conn,
            select(func.count())
            .select_from(table)
            .where(
                table.c.modified_at > (cursor or 0),
                table.c.received_from.is_distinct_from(peer),
            ),
        )
        seconds: float | None
        if behind == 0:
            seconds = 0.0
        elif cursor:
            seconds = round((latest - cursor) / NS_PER_S, 3)
        else:
            seconds = None
        found.append(
            PeerStatus(spec.tier.name.lower(), peer, cursor, behind, seconds, inbound.get(peer))
        )
    return found


def node_errors(path: Path | None) -> dict[tuple[str, str], str | None]:
    """``{(tier, peer): last error}`` from a ``memrepl serve --status-file`` document."""
    if path is None:
        return {}
    try:
        document = json.loads(path.read_text())
        return {(p["tier"], p["peer_id"]): p.get("last_error") for p in document["peers"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CommandError(f"reading the node status file {str(path)!r}: {exc}") from exc


def node_section(path: Path | None, name: str) -> dict[str, Any] | None:
    """One section (``antientropy``, ``auth``) of a ``memrepl serve --status-file`` document
    (None: no file, or no such section)."""
    if path is None:
        return None
    try:
        found = json.loads(path.read_text()).get(name)
    except (OSError, ValueError, AttributeError) as exc:
        raise CommandError(f"reading the node status file {str(path)!r}: {exc}") from exc
    return found if isinstance(found, dict) else None


def node_antientropy(path: Path | None) -> dict[str, Any] | None:
    """The ``antientropy`` part of a ``memrepl serve --status-file`` document (None: none)."""
    return node_section(path, "antientropy")
