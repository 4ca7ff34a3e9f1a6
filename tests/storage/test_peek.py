"""``memrepl.storage.peek``: reading a store file read-only gives the tier API's records."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from memrepl.errors import StoreError
from memrepl.protocol.enums import MemoryTier, SyncPriority
from memrepl.storage import Store, peek

from ..files import dump

#: peek reads SQLite files with sqlite3 (what the CLI's read-only commands use).
pytestmark = pytest.mark.sqlite_only

CONTENTS = {
    MemoryTier.WORKING: {"goal": "book flights", "n": [1, 2.5, None]},
    MemoryTier.EPISODIC: {"episode_id": "trip", "occurred_at_ns": 7, "what": "searched"},
    MemoryTier.SEMANTIC: {"kind": "relation", "source": "s", "target": "t", "relation": "r"},
}


def test_a_record_equals_get_by_id_and_counts_nothing(
    store: Store, db_path: Path, tier: MemoryTier
) -> None:
    memory = store.tier(tier)
    memory.add("item-1", CONTENTS[tier], priority=SyncPriority.HIGH)
    memory.merge("item-1", {"extra": True})
    conn = peek.connect_readonly(db_path)
    try:
        before = dump(db_path)
        peeked = peek.read_record(conn, tier, "item-1", time.time_ns())
        assert dump(db_path) == before
        assert peeked is not None
        assert peeked["access_count"] == 0
        counted = memory.get_by_id("item-1")
        assert counted is not None
        after = peek.read_record(conn, tier, "item-1", time.time_ns())
    finally:
        conn.close()
    assert after == counted
    assert list(after) == list(counted)
    assert {k: v for k, v in peeked.items() if k not in ("access_count", "last_accessed_ns")} == {
        k: v for k, v in counted.items() if k not in ("access_count", "last_accessed_ns")
    }
    assert peeked["priority"] is SyncPriority.HIGH


def test_missing_deleted_and_expired_items_are_absent(
    opener: Callable[..., Store], db_path: Path
) -> None:
    store = opener()
    store.working.add("gone", {"n": 1})
    store.working.delete("gone")
    store.working.add("brief", {"n": 2}, ttl_s=1)
    conn = peek.connect_readonly(db_path)
    try:
        now = time.time_ns()
        assert peek.read_record(conn, MemoryTier.WORKING, "never", now) is None
        assert peek.read_record(conn, MemoryTier.WORKING, "gone", now) is None
        assert peek.read_record(conn, MemoryTier.WORKING, "brief", now) is not None
        assert peek.read_record(conn, MemoryTier.WORKING, "brief", now + 2_000_000_000) is None
        assert peek.stored_node_id(conn) == "node-a"
    finally:
        conn.close()


def test_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    other.write_bytes(b"")
    conn = peek.connect_readonly(other)
    try:
        assert peek.stored_node_id(conn) is None
        with pytest.raises(StoreError, match="is this a memrepl store"):
            peek.read_record(conn, MemoryTier.WORKING, "x", 0)
    finally:
        conn.close()


def test_get_by_id_without_counting_writes_nothing(
    store: Store, db_path: Path, tier: MemoryTier
) -> None:
    memory = store.tier(tier)
    memory.add("item-1", CONTENTS[tier])
    before = dump(db_path)
    looked = memory.get_by_id("item-1", count_access=False)
    assert dump(db_path) == before
    conn = peek.connect_readonly(db_path)
    try:
        assert looked == peek.read_record(conn, tier, "item-1", time.time_ns())
    finally:
        conn.close()
    assert looked is not None and looked["access_count"] == 0
    assert memory.get_by_id("missing", count_access=False) is None
    counted = memory.get_by_id("item-1")
    assert counted is not None and counted["access_count"] == 1
