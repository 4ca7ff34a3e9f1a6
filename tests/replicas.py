"""What replicas must agree on, for every test package that syncs nodes.

:func:`replicated` is a tier as every node must hold it once converged: each item's id, version
(stamp and origin), deletion and content. Two nodes have converged on a tier when their
``replicated`` values are equal; local bookkeeping (``modified_at``, access counts, where a row
came from) is left out, since it differs between nodes by design.
"""

from __future__ import annotations

import json
from typing import Any

from memrepl.protocol.enums import MemoryTier
from memrepl.storage.store import Store


def replicated(store: Store, tier: MemoryTier) -> list[tuple[Any, ...]]:
    """``(item_id, timestamp_ns, origin_node, deleted, content JSON)`` of every row of ``tier``,
    tombstones included, sorted (key order inside a JSON object is not part of its value)."""
    return sorted(
        (
            r["item_id"],
            r["timestamp_ns"],
            r["origin_node"],
            r["deleted"],
            json.dumps(r["content"], sort_keys=True),
        )
        for r in store.tier(tier).get_modified_since(0)
    )


def replicated_store(store: Store) -> dict[MemoryTier, list[tuple[Any, ...]]]:
    """:func:`replicated` of every tier."""
    return {tier: replicated(store, tier) for tier in MemoryTier}
