"""The SQL schema of a memrepl store: every table and column, defined once in SQLAlchemy Core.

The rule that keeps it right: the three tier tables get their shared columns from ONE function,
:func:`item_columns`, which returns fresh ``Column`` objects each call; a tier adds only its own
columns (ARCHITECTURE.md, "The tiers"). Alembic owns the DDL (``migrations/``); a test checks that
the migrated database equals this metadata, so a change here needs a new migration.

These are plain tables meant to be queried with SQL (``sqlite3 memrepl.db``).

Tier tables ``working_items``, ``episodic_items``, ``semantic_items`` -- one row per item,
tombstones included:

========================  ==========================================================================
``item_id``               the item's id (1-32 bytes of UTF-8, no NUL), primary key
``content``               the item's JSON object as text (``{}`` for a tombstone)
``deleted``               1 when the row is a tombstone
``version_ts``            stamp of the latest write to the item (the wire's ``timestamp_ns``)
``version_origin``        node id that made that write; (version_ts, version_origin) is LWW order
``whole_ts``              stamp of the last whole write (INSERT/UPDATE/DELETE), 0 if none
``whole_origin``          its node id ('' if none)
``whole_deleted``         1 when that whole write was a DELETE (or there was none)
``field_clocks``          JSON ``{field: [stamp, origin]}`` of fields MERGEd after the whole write
``causal_context``        JSON ``{node id: highest stamp it wrote to this item}``
``priority``              replication priority of the latest write (SyncPriority: 0-4)
``modified_at``           this node's HLC stamp when the row last changed HERE (local write or
                          applied batch); unique and strictly increasing in commit order
``received_from``         the peer whose state this row equals; NULL when produced on this node
``created_at_ns``         stamp of the write that first created the row on this node; unique
                          (indexed): the keyword index's rowid for the item
``access_count``          local reads of the item (never replicated, never touches modified_at)
``last_accessed_ns``      wall time of the last local read, NULL if never read
``namespace``             the item's namespace as text (``users/alice``; ``''`` for none; see
                          :mod:`memrepl.namespaces`), indexed; replicated with the item
``item_key``              the key the item's id was derived from (:func:`memrepl.keyed_id`), NULL
                          when none; replicated
``namespace_ts``          stamp of the write that set the namespace and key, 0 if none did
``namespace_origin``      its node id ('' if none)
``item_options``          the filing options set with the namespace (:mod:`memrepl.filing`: the
                          content paths the vector index embeds, the TTL), canonical JSON text,
                          ``''`` for none; replicated
========================  ==========================================================================

Tier extras: ``expires_at_ns`` on every tier (local: when this node forgets the item; NULL never;
:mod:`memrepl.storage.expiry`), ``working_items.pinned`` (local: never evicted);
``episodic_items.episode_id`` and ``.occurred_at_ns``, and ``semantic_items.kind``,
``.source_id``, ``.target_id``, ``.relation`` (derived from the content's keys ``episode_id``,
``occurred_at_ns``, ``kind``, ``source``, ``target``, ``relation``; NULL when absent).

Other tables: ``node`` (one row: this database's node id, the clock's last stamp, when and by which
memrepl it was created), ``conflicts`` (one row per concurrent pair detected while applying a
batch: winner, loser, the state kept, the rule), ``sync_vectors`` (per tier and peer, the highest
local ``modified_at`` the peer acknowledged), ``inbound_cursors`` (per tier and peer, the highest
sender cursor applied here), ``tier_digests`` (per tier and hash bucket of item ids, an
order-independent sum of the bucket's row hashes and its row count: what anti-entropy compares,
kept in the same transaction as the rows; :mod:`memrepl.storage.digests`), ``tombstone_horizons``
(per tier, the highest collected tombstone), ``forgotten_items`` (every item a snapshot made this
node forget, with its content) and ``sync_refusals`` (per peer, tier, direction and code:
batches refused, counted).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Connection

from memrepl.protocol.enums import MemoryTier
from memrepl.storage.sqltypes import Int64, Str

if TYPE_CHECKING:
    from memrepl.storage.records import StoredItem

metadata = MetaData()


def item_columns() -> list[Column[Any]]:
    """The columns every tier table shares, as fresh objects (a Column belongs to one table)."""
    return [
        Column("item_id", Str, primary_key=True),
        Column("content", Str, nullable=False),
        Column("deleted", Boolean, nullable=False),
        Column("version_ts", Int64, nullable=False),
        Column("version_origin", Str, nullable=False),
        Column("whole_ts", Int64, nullable=False),
        Column("whole_origin", Str, nullable=False),
        Column("whole_deleted", Boolean, nullable=False),
        Column("field_clocks", Str, nullable=False),
        Column("causal_context", Str, nullable=False),
        Column("priority", Int64, nullable=False),
        Column("modified_at", Int64, nullable=False),
        Column("received_from", Str, nullable=True),
        # The placement (merge.Placement), after the state columns an update of the state
        # alone sets; the indexed namespace text last, with the columns only a whole upsert sets.
        Column("item_key", Str, nullable=True),
        Column("namespace_ts", Int64, nullable=False, server_default="0"),
        Column("namespace_origin", Str, nullable=False, server_default=text("''")),
        Column("item_options", Str, nullable=False, server_default=text("''")),
        Column("created_at_ns", Int64, nullable=False),
        Column("access_count", Int64, nullable=False, server_default="0"),
        Column("last_accessed_ns", Int64, nullable=True),
        Column("namespace", Str, nullable=False, server_default=text("''")),
    ]


def _tier_table(name: str, *extra: Column[Any] | Index) -> Table:
    return Table(
        name,
        metadata,
        *item_columns(),
        *extra,
        Index(f"ix_{name}_modified_at", "modified_at", unique=True),
        Index(f"ix_{name}_namespace", "namespace"),
        # The keyword index's rowid (memrepl.storage.keyword): unique, and how a hit finds its row.
        Index(f"ix_{name}_created_at_ns", "created_at_ns", unique=True),
    )


working_items = _tier_table(
    "working_items",
    Column("pinned", Boolean, nullable=False, server_default="0"),
    Column("expires_at_ns", Int64, nullable=True),
    Index("ix_working_items_expires_at_ns", "expires_at_ns"),
)

episodic_items = _tier_table(
    "episodic_items",
    Column("episode_id", Str, nullable=True),
    Column("occurred_at_ns", Int64, nullable=True),
    Column("expires_at_ns", Int64, nullable=True),
    Index("ix_episodic_items_episode_occurred", "episode_id", "occurred_at_ns"),
    Index("ix_episodic_items_occurred_episode", "occurred_at_ns", "episode_id"),
    Index("ix_episodic_items_expires_at_ns", "expires_at_ns"),
)

semantic_items = _tier_table(
    "semantic_items",
    Column("kind", Str, nullable=True),
    Column("source_id", Str, nullable=True),
    Column("target_id", Str, nullable=True),
    Column("relation", Str, nullable=True),
    Column("expires_at_ns", Int64, nullable=True),
    Index("ix_semantic_items_source_id", "source_id"),
    Index("ix_semantic_items_target_id", "target_id"),
    Index("ix_semantic_items_expires_at_ns", "expires_at_ns"),
)

node = Table(
    "node",
    metadata,
    Column("id", Int64, primary_key=True, autoincrement=False),
    Column("node_id", Str, nullable=False),
    Column("clock_last_ns", Int64, nullable=False),
    Column("created_at_ns", Int64, nullable=False),
    Column("created_by_version", Str, nullable=False),
    CheckConstraint("id = 1", name="ck_node_single_row"),
)

conflicts = Table(
    "conflicts",
    metadata,
    Column("id", Int64, primary_key=True, autoincrement=True),
    Column("tier", Int64, nullable=False),
    Column("item_id", Str, nullable=False),
    Column("winner_ts", Int64, nullable=False),
    Column("winner_origin", Str, nullable=False),
    Column("winner_content", Str, nullable=False),
    Column("winner_deleted", Boolean, nullable=False),
    Column("winner_context", Str, nullable=False),
    Column("loser_ts", Int64, nullable=False),
    Column("loser_origin", Str, nullable=False),
    Column("loser_content", Str, nullable=False),
    Column("loser_deleted", Boolean, nullable=False),
    Column("loser_context", Str, nullable=False),
    Column("resolved_content", Str, nullable=False),
    Column("rule", Str, nullable=False),
    Column("peer_id", Str, nullable=False),
    Column("batch_id", Str, nullable=True),
    Column("detected_at_ns", Int64, nullable=False),
    UniqueConstraint(
        "tier",
        "item_id",
        "winner_ts",
        "winner_origin",
        "loser_ts",
        "loser_origin",
        name="uq_conflicts_pair",
    ),
    Index("ix_conflicts_loser_origin", "loser_origin"),
    Index("ix_conflicts_detected_at_ns", "detected_at_ns"),
    sqlite_autoincrement=True,
)

sync_vectors = Table(
    "sync_vectors",
    metadata,
    Column("tier", Int64, nullable=False),
    Column("peer_id", Str, nullable=False),
    Column("acked_cursor", Int64, nullable=False),
    Column("updated_at_ns", Int64, nullable=False),
    PrimaryKeyConstraint("tier", "peer_id"),
)

inbound_cursors = Table(
    "inbound_cursors",
    metadata,
    Column("tier", Int64, nullable=False),
    Column("peer_id", Str, nullable=False),
    Column("applied_cursor", Int64, nullable=False),
    Column("updated_at_ns", Int64, nullable=False),
    PrimaryKeyConstraint("tier", "peer_id"),
)


#: A tier's in-transaction hook: run by every write inside its transaction, after the tier's rows
#: changed, with the rows as they now are, and whether they are local writes (True) or states
#: applied from a peer (False) (see :attr:`TierSpec.on_change`).
ChangeHook = Callable[[Connection, Sequence["StoredItem"], bool], None]


@dataclass(frozen=True, slots=True)
class TierSpec:
    """What the storage operations need to know about one tier's table.

    ``derive_columns(content)`` gives the tier's derived columns for an item's content (every
    derived column, None when the content lacks it); ``local_defaults`` names the tier's local
    columns (set by local writes only, never replicated) with their value for a new row.
    ``on_change`` is the tier's in-transaction hook (working memory's eviction): called as
    ``on_change(conn, changed_items, local)`` by :func:`memrepl.storage.items.write_local`
    (``local=True``) and :func:`~memrepl.storage.items.apply_remote_states` (``local=False``)
    after they wrote rows, inside the same
    transaction; an exception there rolls the whole write back. A store may carry its own copy of
    a spec with a hook bound to its settings (``dataclasses.replace``).
    """

    tier: MemoryTier
    table: Table
    derive_columns: Callable[[Mapping[str, Any]], dict[str, Any]]
    local_defaults: Mapping[str, Any] = field(default_factory=dict)
    on_change: ChangeHook | None = None
    #: The names of the derived columns (those :attr:`derive_columns` returns).
    derived_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "derived_names", tuple(self.derive_columns({})))


def _no_derived_columns(content: Mapping[str, Any]) -> dict[str, Any]:
    return {}


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: object) -> int | None:
    # bool is an int in Python but not a time; SQLite integers are signed 64-bit.
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return value
    return None


def episodic_columns(content: Mapping[str, Any]) -> dict[str, Any]:
    """Episodic derived columns: ``episode_id`` (a str) and ``occurred_at_ns`` (an int)."""
    return {
        "episode_id": _str_or_none(content.get("episode_id")),
        "occurred_at_ns": _int_or_none(content.get("occurred_at_ns")),
    }


SEMANTIC_KINDS = frozenset({"concept", "relation"})


def semantic_columns(content: Mapping[str, Any]) -> dict[str, Any]:
    """Semantic derived columns: ``kind`` (concept/relation), ``source_id``, ``target_id``,
    ``relation``."""
    kind = content.get("kind")
    return {
        "kind": kind if kind in SEMANTIC_KINDS else None,
        "source_id": _str_or_none(content.get("source")),
        "target_id": _str_or_none(content.get("target")),
        "relation": _str_or_none(content.get("relation")),
    }


WORKING = TierSpec(
    MemoryTier.WORKING,
    working_items,
    _no_derived_columns,
    local_defaults={"pinned": False, "expires_at_ns": None},
)
EPISODIC = TierSpec(
    MemoryTier.EPISODIC, episodic_items, episodic_columns, local_defaults={"expires_at_ns": None}
)
SEMANTIC = TierSpec(
    MemoryTier.SEMANTIC, semantic_items, semantic_columns, local_defaults={"expires_at_ns": None}
)

#: The spec of each tier, by tier.
TIER_SPECS: Mapping[MemoryTier, TierSpec] = {
    spec.tier: spec for spec in (WORKING, EPISODIC, SEMANTIC)
}

#: Per tier, the highest ``modified_at`` of a collected tombstone (migration 0002): a peer whose
#: cursor is below it gets a snapshot, because a delta can no longer carry every delete.
tombstone_horizons = Table(
    "tombstone_horizons",
    metadata,
    Column("tier", Int64, primary_key=True, autoincrement=False),
    Column("purged_through", Int64, nullable=False),
    Column("updated_at_ns", Int64, nullable=False),
)

#: Per tier and bucket (a hash of ``item_id``), the sum modulo 2**62 of the bucket's row hashes
#: and how many rows it holds (migration 0004): kept in the same transaction as every change to a
#: tier table, so anti-entropy compares tiers without reading them (memrepl.storage.digests).
tier_digests = Table(
    "tier_digests",
    metadata,
    Column("tier", Int64, nullable=False),
    Column("bucket", Int64, nullable=False),
    Column("digest", Int64, nullable=False),
    Column("row_count", Int64, nullable=False),
    PrimaryKeyConstraint("tier", "bucket"),
)

#: The vector index (migration 0007): one row per embedded live item, local and derived (it never
#: travels; memrepl.storage.vector_index). ``source_modified_at`` is the item's ``modified_at``
#: when it was embedded; ``vector`` its unit vectors as float32 bytes, one after the other (one per
#: text its filing options select, memrepl.filing; usually one); ``namespace`` a copy of its
#: namespace's text, to narrow a search before reading rows.
item_vectors = Table(
    "item_vectors",
    metadata,
    Column("tier", Int64, nullable=False),
    Column("item_id", Str, nullable=False),
    Column("source_modified_at", Int64, nullable=False),
    Column("namespace", Str, nullable=False),
    Column("vector", LargeBinary, nullable=False),
    PrimaryKeyConstraint("tier", "item_id"),
    Index("ix_item_vectors_tier_source", "tier", "source_modified_at"),
)

#: Per tier, which embedder filled ``item_vectors`` (its name and dimension) and how far: the
#: highest ``modified_at`` of the tier it has embedded (the indexer's cursor on the change feed).
vector_indexes = Table(
    "vector_indexes",
    metadata,
    Column("tier", Int64, primary_key=True, autoincrement=False),
    Column("embedder", Str, nullable=False),
    Column("dims", Int64, nullable=False),
    Column("cursor", Int64, nullable=False),
    Column("updated_at_ns", Int64, nullable=False),
)

#: Every item a snapshot made this node forget (migration 0008), kept whole: a snapshot may drop
#: items whose deletes the sender already collected (memrepl.sync.snapshots), and nothing may
#: vanish without a trace. Plain rows for SQL, never replicated.
forgotten_items = Table(
    "forgotten_items",
    metadata,
    Column("id", Int64, primary_key=True, autoincrement=True),
    Column("tier", Int64, nullable=False),
    Column("item_id", Str, nullable=False),
    Column("content", Str, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("version_ts", Int64, nullable=False),
    Column("version_origin", Str, nullable=False),
    Column("causal_context", Str, nullable=False),
    Column("modified_at", Int64, nullable=False),
    Column("received_from", Str, nullable=True),
    Column("peer_id", Str, nullable=False),
    Column("snapshot_id", Str, nullable=False),
    Column("purged_through", Int64, nullable=False),
    Column("forgotten_at_ns", Int64, nullable=False),
    Index("ix_forgotten_items_tier_item", "tier", "item_id"),
    sqlite_autoincrement=True,
)

#: Batches refused, per peer, tier (0: unknown), direction and code (migration 0008):
#: ``inbound`` -- this node refused a batch the peer sent; ``outbound`` -- the peer refused one
#: of ours. ``ahead_ns``: for clock trouble, how far ahead of the refusing node's wall clock the
#: refused stamp was (inbound only). Local, never replicated; read by ``memrepl status``.
sync_refusals = Table(
    "sync_refusals",
    metadata,
    Column("peer_id", Str, nullable=False),
    Column("tier", Int64, nullable=False),
    Column("direction", Str, nullable=False),
    Column("code", Str, nullable=False),
    Column("reason", Str, nullable=False),
    Column("count", Int64, nullable=False),
    Column("first_at_ns", Int64, nullable=False),
    Column("last_at_ns", Int64, nullable=False),
    Column("ahead_ns", Int64, nullable=True),
    PrimaryKeyConstraint("peer_id", "tier", "direction", "code"),
    CheckConstraint("direction IN ('inbound', 'outbound')", name="ck_sync_refusals_direction"),
)
