"""The seed's tier interface on every tier, and the edge semantics of add/update/delete/merge."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from memrepl.errors import ItemExistsError, ItemNotFoundError, StoreError, UnknownTierError
from memrepl.protocol.enums import MemoryTier, SyncOperation, SyncPriority
from memrepl.storage import (
    EpisodicMemory,
    LocalWrite,
    SemanticMemory,
    Store,
    Tier,
    WorkingMemory,
)
from memrepl.storage.digests import bucket_of
from memrepl.storage.items import _store, load_items

from ..files import dump, intact, query
from .sqltrace import first_words, statements_run

RECORD_KEYS = {
    "item_id",
    "content",
    "deleted",
    "timestamp_ns",
    "origin_node",
    "priority",
    "modified_at",
    "created_at_ns",
    "access_count",
    "last_accessed_ns",
}


def test_seed_interface_round_trip(store: Store, tier: MemoryTier) -> None:
    memory = store.tier(tier)
    added = memory.add("a" * 32, {"data": "value"})
    assert added.keys() >= RECORD_KEYS
    assert added["content"] == {"data": "value"}
    assert added["deleted"] is False
    assert added["origin_node"] == "node-a"
    assert added["priority"] == SyncPriority.NORMAL
    assert added["timestamp_ns"] == added["modified_at"] == added["created_at_ns"]

    got = memory.get_by_id("a" * 32)
    assert got is not None
    assert got["content"] == {"data": "value"}

    updated = memory.update("a" * 32, {"other": 1})
    assert updated["content"] == {"other": 1}
    merged = memory.merge("a" * 32, {"more": [1, 2]})
    assert merged["content"] == {"other": 1, "more": [1, 2]}
    deleted = memory.delete("a" * 32)
    assert deleted["deleted"] is True
    assert deleted["content"] == {}
    assert memory.get_by_id("a" * 32) is None

    stamps = [added, updated, merged, deleted]
    assert [r["modified_at"] for r in stamps] == sorted({r["modified_at"] for r in stamps})
    changes = memory.get_modified_since(0)
    assert [(r["item_id"], r["deleted"]) for r in changes] == [("a" * 32, True)]
    assert changes[0]["modified_at"] == deleted["modified_at"]


def test_get_modified_since_order_and_bound(store: Store, tier: MemoryTier) -> None:
    memory = store.tier(tier)
    first = memory.add("one", {"n": 1})
    memory.add("two", {"n": 2})
    memory.add("three", {"n": 3})
    memory.update("one", {"n": 11})
    memory.delete("two")
    changes = memory.get_modified_since(first["modified_at"])
    assert [(r["item_id"], r["deleted"]) for r in changes] == [
        ("three", False),
        ("one", False),
        ("two", True),
    ]
    stamps = [r["modified_at"] for r in changes]
    assert stamps == sorted(stamps)
    assert memory.get_modified_since(stamps[-1]) == []


def test_reads_are_not_modifications(store: Store, tier: MemoryTier) -> None:
    memory = store.tier(tier)
    added = memory.add("x", {"v": 1})
    for expected in (1, 2, 3):
        got = memory.get_by_id("x")
        assert got is not None
        assert got["access_count"] == expected
        assert got["modified_at"] == added["modified_at"]
        assert got["last_accessed_ns"] is not None
    assert memory.get_modified_since(added["modified_at"]) == []
    assert memory.get_by_id("missing") is None


def test_priority_is_stored(store: Store, tier: MemoryTier) -> None:
    memory = store.tier(tier)
    memory.add("p", {"v": 1}, priority=SyncPriority.URGENT)
    assert memory.get_modified_since(0)[0]["priority"] == SyncPriority.URGENT
    memory.merge("p", {"w": 2}, priority=SyncPriority.BACKGROUND)
    assert memory.get_modified_since(0)[0]["priority"] == SyncPriority.BACKGROUND


def test_add_of_live_id_is_refused(store: Store, tier: MemoryTier, db_path: Path) -> None:
    memory = store.tier(tier)
    memory.add("x", {"v": 1})
    before = dump(db_path)
    with pytest.raises(ItemExistsError) as caught:
        memory.add("x", {"v": 2})
    assert caught.value.item_id == "x"
    assert dump(db_path) == before


def test_add_over_tombstone_resurrects(store: Store, tier: MemoryTier) -> None:
    memory = store.tier(tier)
    memory.add("x", {"v": 1, "gone": True})
    memory.delete("x")
    again = memory.add("x", {"v": 2})
    assert again["content"] == {"v": 2}
    assert again["deleted"] is False
    assert memory.get_by_id("x") is not None


@pytest.mark.parametrize("operation", ["update", "delete"])
def test_update_or_delete_of_missing_or_deleted(
    store: Store, tier: MemoryTier, db_path: Path, operation: str
) -> None:
    memory = store.tier(tier)
    memory.add("dead", {"v": 1})
    memory.delete("dead")
    before = dump(db_path)
    for item_id in ("missing", "dead"):
        with pytest.raises(ItemNotFoundError) as caught:
            if operation == "update":
                memory.update(item_id, {"v": 2})
            else:
                memory.delete(item_id)
        assert caught.value.item_id == item_id
    assert dump(db_path) == before


def test_merge_creates_missing_and_resurrects_deleted(store: Store, tier: MemoryTier) -> None:
    memory = store.tier(tier)
    created = memory.merge("new", {"a": 1})
    assert created["content"] == {"a": 1}
    assert created["deleted"] is False
    memory.add("old", {"a": 1, "b": 2})
    memory.delete("old")
    revived = memory.merge("old", {"c": 3})
    assert revived["content"] == {"c": 3}
    got = memory.get_by_id("old")
    assert got is not None
    assert got["content"] == {"c": 3}


def test_merge_keeps_other_fields_and_overwrites_given(store: Store, tier: MemoryTier) -> None:
    memory = store.tier(tier)
    memory.add("m", {"a": 1, "b": {"deep": True}})
    merged = memory.merge("m", {"b": None, "c": "x"})
    assert merged["content"] == {"a": 1, "b": None, "c": "x"}


def test_write_many_is_one_transaction_in_order(store: Store, tier: MemoryTier) -> None:
    memory = store.tier(tier)
    records = memory.write_many(
        [
            LocalWrite.add("a", {"n": 1}),
            LocalWrite.add("b", {"n": 2}, SyncPriority.HIGH),
            LocalWrite.update("a", {"n": 10}),
            LocalWrite.merge("c", {"n": 3}),
            LocalWrite.delete("b"),
        ]
    )
    assert [r["item_id"] for r in records] == ["a", "b", "a", "c", "b"]
    assert records[2]["content"] == {"n": 10}
    assert records[4]["deleted"] is True
    stamps = [r["modified_at"] for r in records]
    assert stamps == sorted(set(stamps))
    changes = memory.get_modified_since(0)
    # One row per id, at the stamp of its last write in the call.
    assert [(r["item_id"], r["modified_at"]) for r in changes] == [
        ("a", stamps[2]),
        ("c", stamps[3]),
        ("b", stamps[4]),
    ]


def test_write_many_refuses_whole_call(store: Store, tier: MemoryTier, db_path: Path) -> None:
    memory = store.tier(tier)
    memory.add("live", {"v": 1})
    before = dump(db_path)
    with pytest.raises(ItemExistsError):
        memory.write_many([LocalWrite.add("fresh", {"v": 1}), LocalWrite.add("live", {"v": 2})])
    assert dump(db_path) == before
    assert memory.get_by_id("fresh") is None


def test_write_many_commits_once(store: Store, tier: MemoryTier, backend: str) -> None:
    # The first write after the migrations also reloads the keyword index's configuration (FTS5
    # notices the schema changed since it last read it): count a later write's own statements,
    # on the connection checked out again (which is when the trace attaches).
    store.tier(tier).add("warm-up", {"n": -1})
    store._drop_writer()
    writes = [LocalWrite.add(f"i{n}", {"n": n}) for n in range(50)]
    commits: list[object] = []
    event.listen(store.engine, "commit", commits.append)
    statements = first_words(statements_run(store, lambda: store.tier(tier).write_many(writes)))
    # Clock read, one load of the rows, one executemany upsert (50 INSERTs as SQLite runs them),
    # the keyword index (SQLite: one executemany, 50 more; PostgreSQL: one INSERT of arrays), one
    # executemany of the digest buckets it touched (one INSERT each), (working: the
    # capacity/expiry check), clock save, one COMMIT. On PostgreSQL the write lock is taken right
    # after BEGIN, and psycopg sends COMMIT itself (counted by SQLAlchemy's commit event).
    capacity_check = ["SELECT"] if tier == MemoryTier.WORKING else []
    buckets = len({bucket_of(f"i{n}") for n in range(50)})
    lock, keyword_rows, commit = (
        ([], 50, ["COMMIT"]) if backend == "sqlite" else (["SELECT"], 1, [])
    )
    assert statements == [
        "BEGIN",
        *lock,
        "SELECT",
        "SELECT",
        *["INSERT"] * 50,
        *["INSERT"] * keyword_rows,
        *["INSERT"] * buckets,
        *capacity_check,
        "UPDATE",
        *commit,
    ]
    assert len(commits) == 1


def test_tier_lookup(store: Store) -> None:
    assert store.tier(MemoryTier.WORKING) is store.working
    assert store.tier(2) is store.episodic
    assert store.tier(3) is store.semantic
    assert isinstance(store.working, WorkingMemory)
    assert isinstance(store.episodic, EpisodicMemory)
    assert isinstance(store.semantic, SemanticMemory)
    for bad in (0, 4, 5, -1, "working", None, True, 1.0):
        with pytest.raises(UnknownTierError) as caught:
            store.tier(bad)  # type: ignore[arg-type]
        assert caught.value.tier == bad


def test_constructor_with_store_is_the_stores_tier(store: Store) -> None:
    assert WorkingMemory(store=store) is store.working
    assert EpisodicMemory(store=store) is store.episodic
    assert SemanticMemory(store) is store.semantic
    assert WorkingMemory(store=store).store is store


def test_bare_constructors_work_in_memory() -> None:
    for cls in (WorkingMemory, EpisodicMemory, SemanticMemory):
        memory: Tier = cls()
        try:
            assert memory.store.path is None
            assert memory.node_id.startswith("node-")
            memory.add("k", {"v": 1})
            memory.merge("k", {"w": 2})
            got = memory.get_by_id("k")
            assert got is not None
            assert got["content"] == {"v": 1, "w": 2}
            assert len(memory.get_modified_since(0)) == 1
        finally:
            memory.store.close()
    assert WorkingMemory().node_id != WorkingMemory().node_id


def test_tier_tables_are_plain_sql(store: Store, db_path: Path) -> None:
    store.working.add("w", {"v": 1}, priority=SyncPriority.HIGH)
    store.episodic.add("e", {"episode_id": "ep-1", "occurred_at_ns": 42, "what": "x"})
    store.semantic.add("s", {"kind": "relation", "source": "a", "target": "b", "relation": "is"})
    store.semantic.add("c", {"kind": "nonsense", "source": 7})
    assert query(db_path, "SELECT item_id, content, deleted, priority FROM working_items") == [
        ("w", '{"v": 1}', 0, 3)
    ]
    assert query(db_path, "SELECT episode_id, occurred_at_ns FROM episodic_items") == [("ep-1", 42)]
    assert query(
        db_path,
        "SELECT item_id, kind, source_id, target_id, relation FROM semantic_items ORDER BY item_id",
    ) == [("c", None, None, None, None), ("s", "relation", "a", "b", "is")]
    store.episodic.delete("e")
    assert query(db_path, "SELECT episode_id, occurred_at_ns, content FROM episodic_items") == [
        (None, None, "{}")
    ]


def test_local_columns_keep_their_value(store: Store, db_path: Path) -> None:
    store.working.write_many(
        [LocalWrite("w", SyncOperation.INSERT, {"v": 1}, local={"pinned": True})]
    )
    store.working.update("w", {"v": 2})
    assert query(db_path, "SELECT pinned FROM working_items") == [(1,)]
    record = store.working.get_by_id("w")
    assert record is not None
    assert record["pinned"] is True
    assert record["expires_at_ns"] is None


def test_returned_records_share_nothing(store: Store) -> None:
    """A record is the caller's to change: changing it changes no other record, no stored item
    and no semantic graph."""
    records = store.semantic.write_many(
        [
            LocalWrite.merge("c", {"kind": "concept", "name": "c", "tags": ["a"]}),
            LocalWrite.merge("c", {"more": {"x": [1]}}),
        ]
    )
    records[0]["content"]["tags"].append("changed")
    records[1]["content"]["more"]["x"].append(2)
    assert records[1]["content"]["tags"] == ["a"]
    assert store.semantic.graph.nodes["c"]["tags"] == ["a"]
    assert store.semantic.graph.nodes["c"]["more"] == {"x": [1]}
    stored = store.semantic.get_by_id("c")
    assert stored is not None
    assert stored["content"] == {"kind": "concept", "name": "c", "tags": ["a"], "more": {"x": [1]}}


# Per tier: its own columns (derived from content, or local), content that sets them, a write
# that moves them, and the value of one of them before and after that write.
TIER_COLUMNS: dict[MemoryTier, tuple[tuple[str, ...], dict[str, Any], LocalWrite, str]] = {
    MemoryTier.WORKING: (
        ("pinned", "expires_at_ns"),
        {"v": 1},
        LocalWrite("moved", SyncOperation.UPDATE, {"v": 2}, local={"expires_at_ns": 4 * 10**18}),
        "expires_at_ns",
    ),
    MemoryTier.EPISODIC: (
        ("episode_id", "occurred_at_ns"),
        {"episode_id": "ep-1", "occurred_at_ns": 5, "v": 1},
        LocalWrite.update("moved", {"episode_id": "ep-2", "occurred_at_ns": 6, "v": 2}),
        "episode_id",
    ),
    MemoryTier.SEMANTIC: (
        ("kind", "source_id", "target_id", "relation"),
        {"kind": "relation", "source": "a", "target": "b", "relation": "knows", "v": 1},
        LocalWrite.update("moved", {"kind": "relation", "source": "a", "target": "c"}),
        "target_id",
    ),
}


def test_a_write_sets_tier_columns_only_when_they_change(
    opener: Callable[..., Store], db_path: Path, tier: MemoryTier
) -> None:
    """SQLite rewrites the index entries of every column an UPDATE sets, so an update that
    keeps an item's tier columns (episode, time, graph ends, expiry) must leave them out;
    one that moves them must set them."""
    names, content, move, watched = TIER_COLUMNS[tier]
    with opener() as store:
        store.tier(tier).write_many([LocalWrite.add(i, content) for i in ("kept", "moved")])
    table = f"{tier.name.lower()}_items"
    columns = f"SELECT {', '.join(names)} FROM {table} WHERE item_id = ?"
    kept_before, moved_before = query(db_path, columns, "kept"), query(db_path, columns, "moved")

    store = opener()
    kept = LocalWrite.update("kept", {**content, "v": 2})
    statements = statements_run(store, lambda: store.tier(tier).write_many([kept, move]))
    (kept_sql,) = [sql for sql in statements if "'kept'" in sql and "SELECT" not in sql]
    (moved_sql,) = [sql for sql in statements if "'moved'" in sql and "SELECT" not in sql]
    assert kept_sql.startswith(f"UPDATE {table} SET content")
    assert not any(f" {name}=" in kept_sql for name in names), kept_sql
    assert all(f"{name}" in moved_sql.split(" VALUES ")[0] for name in names), moved_sql

    assert store.tier(tier).get_by_id("kept")["content"] == {**content, "v": 2}  # type: ignore[index]
    assert query(db_path, columns, "kept") == kept_before
    moved_after = query(db_path, columns, "moved")
    position = names.index(watched)
    assert moved_after[0][position] != moved_before[0][position]
    assert intact(db_path)


def test_a_state_update_that_misses_its_row_fails_the_write(
    opener: Callable[..., Store], db_path: Path
) -> None:
    """The state-only UPDATE relies on the rows read earlier in the same transaction; were they
    ever wrong, the write must fail rather than commit without the row."""
    store = opener()
    store.working.add("kept", {"v": 1})
    with store.read() as conn:
        held = load_items(conn, store.working.spec, ["kept"])["kept"]
    ghost = dataclasses.replace(held, item_id="ghost")
    before = dump(db_path)
    with pytest.raises(StoreError, match="1 state updates"), store.write() as conn:
        _store(conn, store.working.spec, [ghost], {"ghost": ghost}, local=True)
    assert dump(db_path) == before
