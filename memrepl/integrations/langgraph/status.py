"""What ``MemreplStore`` tells that LangGraph's stores cannot: where replication stands, and the
conflict log of its items, in LangGraph's terms (namespaces and keys, datetimes).

Both are read in one read transaction from the tables memrepl documents as plain and queryable
(``memrepl status`` reads the same figures; the conflict log is the ``conflicts`` table): this
module only picks the rows of the store's tier and names them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memrepl.integrations.langgraph.ops import moment
from memrepl.namespaces import Namespace
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.counts import live_count
from memrepl.storage.items import load_items, max_modified_at
from memrepl.storage.store import Store
from memrepl.sync import tombstones
from memrepl.sync.conflicts import ConflictSide, LoggedConflict, conflict_count, logged_conflicts
from memrepl.sync.lag import send_lags


@dataclass(frozen=True, slots=True)
class PeerSync:
    """Replication of the store's tier with one peer, as this node's tables have it."""

    peer_id: str
    #: The highest local change the peer acknowledged (a stamp of this node's clock; None: it
    #: never acknowledged anything).
    acked_cursor: int | None
    #: Changes made or received here that the peer has not acknowledged yet.
    items_behind: int
    #: How stale the peer's copy is: the age in seconds of the oldest change here it has not
    #: acknowledged (0 when it lacks none), as ``memrepl status`` reports it.
    seconds_behind: float
    #: The highest cursor of the peer's own batches applied here (None: nothing came from it).
    inbound_cursor: int | None


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """Where replication of the store's tier stands on this node."""

    node_id: str
    tier: MemoryTier
    #: Live items and tombstones (deletes kept until every peer has them) of the tier.
    items: int
    tombstones: int
    #: Rows of the conflict log for the tier.
    conflicts: int
    #: When a row of the tier last changed here (a stamp of this node's clock).
    latest_change_ns: int
    peers: tuple[PeerSync, ...]

    @property
    def in_sync(self) -> bool:
        """Whether every known peer has acknowledged every change of the tier."""
        return all(peer.items_behind == 0 for peer in self.peers)


@dataclass(frozen=True, slots=True)
class Version:
    """One side of a conflict: the value written, when, by which node; or a delete."""

    value: dict[str, Any]
    updated_at: datetime
    node_id: str
    deleted: bool


@dataclass(frozen=True, slots=True)
class ConflictEntry:
    """A concurrent write to one item, as this node detected it: both versions and the value
    kept (the later version's, last-writer-wins)."""

    namespace: Namespace
    key: str
    winner: Version
    loser: Version
    kept: dict[str, Any]
    #: ``lww``: the winner kept whole; ``field-merge``: writes of both survive.
    rule: str
    #: The peer whose batch brought the other version.
    peer_id: str
    detected_at: datetime


def read_status(store: Store, tier: MemoryTier) -> SyncStatus:
    """The :class:`SyncStatus` of ``tier`` in ``store``."""
    spec = store.tier(tier).spec
    now_ns = time.time_ns()
    with store.read() as conn:
        items = live_count(conn, spec)
        pending = tombstones.pending_tombstones(conn, spec)
        logged = conflict_count(conn, tier)
        latest = max_modified_at(conn, spec)
        lags = send_lags(conn, spec)
    peers = tuple(
        PeerSync(lag.peer_id, lag.acked_cursor, lag.items, lag.seconds(now_ns), lag.inbound_cursor)
        for lag in lags
    )
    return SyncStatus(store.node_id, tier, items, pending, logged, latest, peers)


def _version(side: ConflictSide) -> Version:
    return Version(side.content, moment(side.timestamp_ns), side.origin, side.deleted)


def read_conflicts(
    store: Store, tier: MemoryTier, namespace: Namespace, item_ids: Sequence[str] | None
) -> list[ConflictEntry]:
    """The conflict log of ``tier``'s items under ``namespace`` (or of ``item_ids``), oldest
    first, each named by the namespace and key the item is filed under now."""
    spec = store.tier(tier).spec
    with store.read() as conn:
        logged: list[LoggedConflict] = logged_conflicts(
            conn, spec, namespace=namespace, item_ids=item_ids
        )
        items = load_items(conn, spec, {entry.item_id for entry in logged})
    found = []
    for entry in logged:
        item = items.get(entry.item_id)
        placement = item.state.placement if item is not None else None
        found.append(
            ConflictEntry(
                placement.namespace if placement else (),
                (placement.key or entry.item_id) if placement else entry.item_id,
                _version(entry.winner),
                _version(entry.loser),
                entry.resolved_content,
                entry.rule,
                entry.peer_id,
                moment(entry.detected_at_ns),
            )
        )
    return found
