"""Per-tier digests: what anti-entropy compares, kept as rows change so that no comparison reads
a tier.

Each row of a tier table has a **row hash**: 62 bits of BLAKE2b over the item id and its
replicated state as the merge sees it -- the content's stored text, the last whole write (stamp,
origin, whether it was a DELETE), the field clocks and the causal context (the last two in their
canonical, sorted text), and, for an item filed in a namespace, its placement (the write that
set it, the namespace's text and the key; an unfiled item hashes as it did before namespaces).
Local columns (access counts, working memory's ``pinned`` and expiry,
``modified_at``, ``received_from``) and the replication priority are not part of it: they differ
between replicas by design. The derived columns (``deleted``, ``version_ts``, ``version_origin``,
a tier's indexed content keys) follow from the state and are not hashed either.

Each item falls into one of :data:`BUCKETS` buckets by a CRC-32 of its id. ``tier_digests`` holds,
per tier and bucket, the sum of its rows' hashes modulo 2**62 (order-independent, so adding and
removing rows is arithmetic) and the number of rows. The comparison reads it as a two-level tree:
:data:`GROUPS` groups of :data:`GROUP_BUCKETS` buckets each, summed in SQL.

The rule that keeps it right: **every change to a tier table changes ``tier_digests`` in the same
transaction** by the difference of the row hashes it removed and added, in one statement per
write (:func:`record_changes`): local writes and applied batches
(:func:`memrepl.storage.items._store`), forgetting (eviction, expiry, a snapshot's cleanup:
:func:`~memrepl.storage.items.forget_items`) and tombstone collection
(:func:`memrepl.sync.tombstones.purge`). Writes that bypass memrepl (``sqlite3`` by hand, a bug)
make the table wrong; :func:`find_errors` recomputes it from the rows and :func:`correct` fixes
it. Because every maintained update adds the difference between a row's new hash and the hash of
the row as it was actually stored, such an error stays the same size under later writes: a
correction measured in one read transaction is still right when applied in a later write.

Everything here is portable SQL (integer arithmetic that never overflows a signed 64-bit
integer, ``INSERT ... ON CONFLICT DO UPDATE``): the hash is computed in Python, never in a
database function.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Table, delete, func, literal_column, select
from sqlalchemy.engine import Connection

from memrepl.namespaces import encode_namespace
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import driver
from memrepl.storage.backends import backend_named, backend_of
from memrepl.storage.driver import compile_statement
from memrepl.storage.fastjson import decode_json
from memrepl.storage.records import (
    StoredItem,
    decode_field_clocks,
    encode_context,
    encode_field_clocks,
)
from memrepl.storage.schema import TierSpec, item_columns, tier_digests

#: Buckets per tier (a power of two): about 61 items each in a 1,000,000-item tier.
BUCKETS = 1 << 14
#: Buckets per group of the comparison tree, and groups per tier.
GROUP_BITS = 7
GROUP_BUCKETS = 1 << GROUP_BITS
GROUPS = BUCKETS // GROUP_BUCKETS
#: Digests are sums modulo 2**62: the sum of two of them fits a signed 64-bit integer.
MODULUS = 1 << 62
_LOW_BITS = 31
_LOW_MASK = (1 << _LOW_BITS) - 1

_blake2b = hashlib.blake2b
# Where a row tuple (records.row_tuple, table column order) holds the placement.
_ITEM_COLUMNS = [column.name for column in item_columns()]
_PLACED_TS = _ITEM_COLUMNS.index("namespace_ts")
_PLACED_ORIGIN = _ITEM_COLUMNS.index("namespace_origin")
_NAMESPACE = _ITEM_COLUMNS.index("namespace")
_KEY = _ITEM_COLUMNS.index("item_key")
_OPTIONS = _ITEM_COLUMNS.index("item_options")


def bucket_of(item_id: str) -> int:
    """The bucket of an item id (the same on every node)."""
    return zlib.crc32(item_id.encode()) & (BUCKETS - 1)


def row_hash(values: Sequence[Any], placed: Sequence[Any] | None = None) -> int:
    """The 62-bit hash of one row's replicated state: ``values`` are its item id, content text,
    whole-write stamp, origin and DELETE flag, field clock text and context text (canonical);
    ``placed`` its placement, ``(namespace_ts, namespace_origin, namespace text, key or "",
    options text)``, for a filed item (None, or a 0 stamp: not filed). Filing options are hashed
    only when there are some, so an item without them hashes as it did before they existed."""
    item_id, content, whole_ts, whole_origin, whole_deleted, field_clocks, context = values
    text = (
        f"{item_id}\0{content}\0{whole_ts}\0{whole_origin}\0{1 if whole_deleted else 0}"
        f"\0{field_clocks}\0{context}"
    )
    if placed and placed[0]:
        placed_ts, placed_origin, namespace, key, options = placed
        text += f"\0{placed_ts}\0{placed_origin}\0{namespace}\0{key or ''}"
        if options:
            text += f"\0{options}"
    return int.from_bytes(_blake2b(text.encode(), digest_size=8).digest(), "big") >> 2


def item_hash(item: StoredItem) -> int:
    """The row hash of a stored item."""
    state = item.state
    whole_ts, whole_origin = state.whole
    (placed_ts, placed_origin), namespace, key, options = state.placement
    return row_hash(
        (
            item.item_id,
            item.encoded_content(),
            whole_ts,
            whole_origin,
            state.whole_deleted,
            encode_field_clocks(state.field_clocks),
            encode_context(state.context),
        ),
        (placed_ts, placed_origin, encode_namespace(namespace), key, options),
    )


def tuple_hash(row: Sequence[Any]) -> int:
    """The row hash of a row tuple (:func:`memrepl.storage.records.row_tuple`, whose field clock
    and context text are canonical)."""
    return row_hash(
        (row[0], row[1], row[5], row[6], row[7], row[8], row[9]),
        (row[_PLACED_TS], row[_PLACED_ORIGIN], row[_NAMESPACE], row[_KEY], row[_OPTIONS]),
    )


#: One change to a tier row: ``(item_id, hash of the row before or None, hash after or None)``.
RowChange = tuple[str, int | None, int | None]


@cache
def _upsert(backend: str) -> str:
    statement = backend_named(backend).insert(tier_digests)
    statement = statement.on_conflict_do_update(
        index_elements=[tier_digests.c.tier, tier_digests.c.bucket],
        set_={
            "digest": (tier_digests.c.digest + statement.excluded.digest)
            % literal_column(str(MODULUS)),
            "row_count": tier_digests.c.row_count + statement.excluded.row_count,
        },
    )
    compiled = compile_statement(statement, backend)
    assert compiled.keys == ("tier", "bucket", "digest", "row_count"), compiled.keys
    return compiled.sql


def record_changes(conn: Connection, tier: MemoryTier, changes: Iterable[RowChange]) -> None:
    """Add the differences ``changes`` make to the tier's bucket digests: ONE statement, one row
    per bucket touched. Run it in the transaction that changed the rows."""
    deltas: dict[int, list[int]] = {}
    for item_id, before, after in changes:
        if before == after:
            continue
        bucket = zlib.crc32(item_id.encode()) & (BUCKETS - 1)
        delta = deltas.get(bucket)
        if delta is None:
            delta = deltas[bucket] = [0, 0]
        if before is not None:
            delta[0] -= before
            delta[1] -= 1
        if after is not None:
            delta[0] += after
            delta[1] += 1
    _write_deltas(conn, tier, deltas)


def _write_deltas(conn: Connection, tier: MemoryTier, deltas: Mapping[int, Sequence[int]]) -> None:
    rows = [
        (int(tier), bucket, digest % MODULUS, items)
        for bucket, (digest, items) in deltas.items()
        if digest % MODULUS or items
    ]
    if rows:
        driver.executemany(conn, _upsert(conn.dialect.name), rows)


# -- reading the tree ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """One node of a tier's comparison tree: the sum of its buckets' digests and rows."""

    digest: int
    items: int


_EMPTY = Node(0, 0)


def _sums(where: Any, group_by: Any | None = None) -> Any:
    # Shift amounts and masks as literals: PostgreSQL shifts a bigint by an integer only.
    hi = func.coalesce(func.sum(tier_digests.c.digest.op(">>")(literal_column(str(_LOW_BITS)))), 0)
    lo = func.coalesce(func.sum(tier_digests.c.digest.op("&")(literal_column(str(_LOW_MASK)))), 0)
    items = func.coalesce(func.sum(tier_digests.c.row_count), 0)
    if group_by is None:
        return select(hi, lo, items).where(where)
    return select(group_by, hi, lo, items).where(where).group_by(group_by)


def _node(hi: int, lo: int, items: int) -> Node:
    # Each half sums at most 2**14 values below 2**31: no overflow in SQL.
    return Node(((int(hi) << _LOW_BITS) + int(lo)) % MODULUS, int(items))


def root(conn: Connection, tier: MemoryTier) -> Node:
    """The whole tier's digest and row count: one aggregate over its bucket rows."""
    hi, lo, items = conn.execute(_sums(tier_digests.c.tier == int(tier))).one()
    return _node(hi, lo, items)


def groups(conn: Connection, tier: MemoryTier) -> list[Node]:
    """The :data:`GROUPS` group nodes of the tier, in order."""
    group = (tier_digests.c.bucket.op(">>")(literal_column(str(GROUP_BITS)))).label("grp")
    found = [_EMPTY] * GROUPS
    for index, hi, lo, items in conn.execute(_sums(tier_digests.c.tier == int(tier), group)):
        found[int(index)] = _node(hi, lo, items)
    return found


def leaves(conn: Connection, tier: MemoryTier, group: int) -> list[Node]:
    """The :data:`GROUP_BUCKETS` bucket nodes of one group, in order."""
    first = group * GROUP_BUCKETS
    query = select(tier_digests.c.bucket, tier_digests.c.digest, tier_digests.c.row_count).where(
        tier_digests.c.tier == int(tier),
        tier_digests.c.bucket.between(first, first + GROUP_BUCKETS - 1),
    )
    found = [_EMPTY] * GROUP_BUCKETS
    for bucket, digest, items in conn.execute(query):
        found[int(bucket) - first] = Node(int(digest), int(items))
    return found


# -- the rows themselves ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One row as anti-entropy lists it: its id, row hash and latest write's stamp."""

    item_id: str
    row_hash: int
    version_ts: int


#: The placement columns, in the order :func:`row_hash` takes them.
PLACEMENT_COLUMNS = ("namespace_ts", "namespace_origin", "namespace", "item_key", "item_options")


def _state_columns(table: Table, *, placed: Sequence[str] = PLACEMENT_COLUMNS) -> list[Any]:
    c = table.c
    columns = [
        c.item_id,
        c.content,
        c.whole_ts,
        c.whole_origin,
        c.whole_deleted,
        c.field_clocks,
        c.causal_context,
        c.version_ts,
    ]
    return columns + [c[name] for name in placed]


def _canonical(text: str, decode: Any, encode: Any) -> str:
    try:
        return str(encode(decode(text)))
    except (ValueError, TypeError, AttributeError):
        # A hand-mangled cell: hashed as it is, so it still differs from every good state.
        return text


def _hash_values(values: Sequence[Any]) -> int:
    item_id, content, whole_ts, whole_origin, whole_deleted, field_clocks, context = values[:7]
    return row_hash(
        (
            item_id,
            content,
            whole_ts,
            whole_origin,
            whole_deleted,
            _canonical(field_clocks, decode_field_clocks, encode_field_clocks),
            _canonical(context, decode_json, encode_context),
        ),
        # Columns a table does not have yet (an older migration's recompute) read as unfiled.
        (*values[8:], None, None, None, None, "")[:5],
    )


@cache
def _scan_sql(table: Table, placed: tuple[str, ...], backend: str) -> str:
    columns = _state_columns(table, placed=placed)
    return compile_statement(select(*columns), backend).sql


def _placement_columns(conn: Connection, spec: TierSpec) -> tuple[str, ...]:
    """The placement columns the tier table has yet: migration 0004 recomputes digests with
    this code before migration 0005 adds the namespace's and 0009 the filing options' (rows
    without them hash as unfiled, or as filed without options)."""
    present = set(backend_of(conn).column_names(conn, spec.table.name))
    return tuple(name for name in PLACEMENT_COLUMNS if name in present)


def recompute(conn: Connection, spec: TierSpec) -> dict[int, tuple[int, int]]:
    """The tier's bucket digests computed from its rows (a full scan): ``{bucket: (digest,
    rows)}`` for the buckets that hold rows."""
    found: dict[int, list[int]] = {}
    scan = _scan_sql(spec.table, _placement_columns(conn, spec), conn.dialect.name)
    for values in driver.scan(conn, scan):
        bucket = bucket_of(values[0])
        sums = found.get(bucket)
        if sums is None:
            sums = found[bucket] = [0, 0]
        sums[0] = (sums[0] + _hash_values(values)) % MODULUS
        sums[1] += 1
    return {bucket: (digest, items) for bucket, (digest, items) in found.items()}


def stored(conn: Connection, tier: MemoryTier) -> dict[int, tuple[int, int]]:
    """The maintained bucket digests: ``{bucket: (digest, rows)}``."""
    query = select(tier_digests.c.bucket, tier_digests.c.digest, tier_digests.c.row_count).where(
        tier_digests.c.tier == int(tier)
    )
    return {int(b): (int(d), int(n)) for b, d, n in conn.execute(query)}


def find_errors(conn: Connection, spec: TierSpec) -> dict[int, tuple[int, int]]:
    """What the maintained digests have that the rows do not: ``{bucket: (digest difference,
    row difference)}`` for each wrong bucket. Run in ONE read transaction (a consistent view)."""
    maintained = stored(conn, spec.tier)
    actual = recompute(conn, spec)
    errors: dict[int, tuple[int, int]] = {}
    for bucket in maintained.keys() | actual.keys():
        have_digest, have_items = maintained.get(bucket, (0, 0))
        true_digest, true_items = actual.get(bucket, (0, 0))
        if (have_digest - true_digest) % MODULUS or have_items != true_items:
            errors[bucket] = ((have_digest - true_digest) % MODULUS, have_items - true_items)
    return errors


def correct(conn: Connection, tier: MemoryTier, errors: Mapping[int, tuple[int, int]]) -> None:
    """Take measured errors (:func:`find_errors`) out of the maintained digests, in a write
    transaction: later maintained writes did not change them (see the module docstring)."""
    _write_deltas(
        conn, tier, {bucket: (-digest, -items) for bucket, (digest, items) in errors.items()}
    )


def rebuild(conn: Connection, spec: TierSpec) -> None:
    """Replace the tier's digests with a fresh computation from its rows (a write transaction;
    what migration 0004 runs on an existing store)."""
    conn.execute(delete(tier_digests).where(tier_digests.c.tier == int(spec.tier)))
    _write_deltas(conn, spec.tier, recompute(conn, spec))


def entries(conn: Connection, spec: TierSpec, buckets: Collection[int]) -> list[Entry]:
    """Every row in ``buckets``, as :class:`Entry`, sorted by id.

    The tier's rows are not stored by bucket, so this reads every item id (the primary key's
    index, no row data) and then the rows of the ids that fall into ``buckets``: it runs only
    when a comparison found buckets that differ.
    """
    wanted = set(buckets)
    if not wanted:
        return []
    table = spec.table
    ids_sql = compile_statement(select(table.c.item_id), conn.dialect.name).sql
    ids = [item_id for (item_id,) in driver.scan(conn, ids_sql) if bucket_of(item_id) in wanted]
    found: list[Entry] = []
    for start in range(0, len(ids), 500):
        found += entries_where(conn, spec, table.c.item_id.in_(ids[start : start + 500]))
    found.sort(key=lambda entry: entry.item_id)
    return found


def entries_where(conn: Connection, spec: TierSpec, where: Any) -> list[Entry]:
    """The rows that match a condition on the tier's table, as :class:`Entry` (what a bulk
    ``DELETE`` must take out of the digests before it runs)."""
    query = select(*_state_columns(spec.table)).where(where)
    return [Entry(v[0], _hash_values(v), int(v[7])) for v in conn.execute(query)]


def forget_entries(conn: Connection, tier: MemoryTier, gone: Iterable[Entry]) -> None:
    """Take rows that are about to be deleted out of the digests (same transaction)."""
    record_changes(conn, tier, ((entry.item_id, entry.row_hash, None) for entry in gone))
