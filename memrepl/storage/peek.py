"""Looking into a store file without opening it as a store: sqlite3 only, read-only.

What this module owns: the reads the command line makes to inspect a store -- its node id, one
item -- through a ``mode=ro`` connection with ``PRAGMA query_only``. They never migrate, stamp
or write anything (not even an access count), work beside a running node, and import neither
SQLAlchemy nor networkx, so ``memrepl get`` starts in a fraction of the time ``memrepl.open``
takes (``bench/cli_bench.py``).

The rule that keeps it right: :func:`read_record` returns exactly the record
:meth:`memrepl.storage.Tier.get_by_id` returns for the same row (the same keys and values, the
tier's own columns included, an expired working item absent), except that no access is counted
-- ``tests/storage/test_peek.py`` compares the two on every tier. It reads columns by name, so a
column a later migration adds to a tier table comes through as one more key, as it does there.
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any
from urllib.parse import quote

from memrepl.errors import StoreError
from memrepl.namespaces import decode_namespace
from memrepl.protocol.enums import MemoryTier, SyncPriority

__all__ = ["connect_readonly", "read_record", "stored_node_id", "tier_table"]

#: The columns every tier table has, and the record key each one becomes (None: not part of a
#: record), in the order of a record's keys. Every other column is the tier's own and keeps its
#: name (after these, as in a record).
_COMMON_COLUMNS: dict[str, str | None] = {
    "item_id": "item_id",
    "namespace": "namespace",
    "item_key": "key",
    "content": "content",
    "deleted": "deleted",
    "version_ts": "timestamp_ns",
    "version_origin": "origin_node",
    "priority": "priority",
    "modified_at": "modified_at",
    "created_at_ns": "created_at_ns",
    "access_count": "access_count",
    "last_accessed_ns": "last_accessed_ns",
    "whole_ts": None,
    "whole_origin": None,
    "whole_deleted": None,
    "field_clocks": None,
    "causal_context": None,
    "received_from": None,
    "namespace_ts": None,
    "namespace_origin": None,
    "item_options": None,
}


def tier_table(tier: MemoryTier) -> str:
    """The table of ``tier``: ``working_items``, ``episodic_items`` or ``semantic_items``."""
    return f"{tier.name.lower()}_items"


def connect_readonly(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A read-only sqlite3 connection to the existing file ``path`` (``mode=ro``,
    ``query_only``); StoreError if it cannot be opened."""
    uri = "file:" + quote(os.path.abspath(os.fspath(path))) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        raise StoreError(f"opening {os.fspath(path)!r} read-only: {exc}") from exc
    return conn


def stored_node_id(conn: sqlite3.Connection) -> str | None:
    """The node id recorded in the store, None if it has none yet (or no ``node`` table)."""
    try:
        row = conn.execute("SELECT node_id FROM node WHERE id = 1").fetchone()
    except sqlite3.DatabaseError as exc:
        if "no such table" in str(exc):
            return None
        raise StoreError(f"reading the node id: {exc}") from exc
    return None if row is None else str(row[0])


def _boolean_columns(conn: sqlite3.Connection, table: str) -> frozenset[str]:
    rows = conn.execute(f"PRAGMA table_info({table})").fetchall()
    return frozenset(row[1] for row in rows if str(row[2]).upper() == "BOOLEAN")


def read_record(
    conn: sqlite3.Connection, tier: MemoryTier, item_id: str, now_ns: int
) -> dict[str, Any] | None:
    """The live item ``item_id`` of ``tier`` as a record, None if it is missing, deleted or
    (working tier) expired at ``now_ns``. Counts no access; StoreError for a file that is not a
    memrepl store."""
    table = tier_table(tier)
    try:
        cursor = conn.execute(f"SELECT * FROM {table} WHERE item_id = ?", (item_id,))
        row = cursor.fetchone()
        names = [column[0] for column in cursor.description]
        flags = _boolean_columns(conn, table)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"reading {table}: {exc} (is this a memrepl store?)") from exc
    if row is None:
        return None
    values = dict(zip(names, row, strict=True))
    if values["deleted"]:
        return None
    expires = values.get("expires_at_ns")
    if tier is MemoryTier.WORKING and expires is not None and expires <= now_ns:
        return None
    record: dict[str, Any] = {}
    for name, key in _COMMON_COLUMNS.items():
        if key is not None:
            record[key] = values[name]
    record["namespace"] = decode_namespace(values["namespace"])
    record["key"] = values["item_key"] or None
    record["content"] = json.loads(values["content"])
    record["deleted"] = False
    record["priority"] = SyncPriority(values["priority"])
    for name in names:
        if name not in _COMMON_COLUMNS:
            value = values[name]
            record[name] = bool(value) if name in flags and value is not None else value
    return record
