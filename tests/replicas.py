"""What replicas must agree on, for every test package that syncs nodes.

:func:`replicated` is a tier as every node must hold it once converged: each item's id, version
(stamp and origin), deletion and content. Two nodes have converged on a tier when their
``replicated`` values are equal; local bookkeeping (``modified_at``, access counts, where a row
came from) is left out, since it differs between nodes by design.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from memrepl.protocol.enums import MemoryTier
from memrepl.storage.store import Store

from .files import query

#: The columns of a tier row that replicate: the whole state the merge joins (version, whole
#: write, field clocks, causal context), none of the local bookkeeping.
REPLICATED_COLUMNS = (
    "item_id, content, deleted, version_ts, version_origin, whole_ts, whole_origin, "
    "whole_deleted, field_clocks, causal_context, namespace, item_key, namespace_ts, "
    "namespace_origin, item_options"
)


def replicated(store: Store, tier: MemoryTier) -> list[tuple[Any, ...]]:
    """``(item_id, timestamp_ns, origin_node, deleted, content JSON, namespace, key)`` of every
    row of ``tier``, tombstones included, sorted (key order inside a JSON object is not part of
    its value)."""
    return sorted(
        (
            r["item_id"],
            r["timestamp_ns"],
            r["origin_node"],
            r["deleted"],
            json.dumps(r["content"], sort_keys=True),
            r["namespace"],
            r["key"],
        )
        for r in store.tier(tier).get_modified_since(0)
    )


def replicated_store(store: Store) -> dict[MemoryTier, list[tuple[Any, ...]]]:
    """:func:`replicated` of every tier."""
    return {tier: replicated(store, tier) for tier in MemoryTier}


def replicated_rows(path: Path) -> list[tuple[Any, ...]]:
    """``(table, *REPLICATED_COLUMNS)`` of every row of every tier of the file at ``path``, as
    stored (plain sqlite3), in table and id order: stricter than :func:`replicated`, it compares
    the stored text and every clock."""
    return [
        (table, *row)
        for table in ("working_items", "episodic_items", "semantic_items")
        for row in query(path, f"SELECT {REPLICATED_COLUMNS} FROM {table} ORDER BY item_id")
    ]
