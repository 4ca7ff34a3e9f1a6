"""get_modified_since is an index range scan on modified_at: EXPLAIN QUERY PLAN of the very
statements the code runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.dialects import sqlite

from memrepl.cli.conflict_cmds import conflict_query
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import LocalWrite, Store
from memrepl.storage.items import modified_since

from .sqltrace import statements_run


def plan(store: Store, statement: str) -> list[str]:
    with store.read() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}").all()
    return [row[3] for row in rows]


def assert_range_scan(store: Store, table: str, action: Callable[[], object]) -> None:
    (select_statement,) = [sql for sql in statements_run(store, action) if sql.startswith("SELECT")]
    steps = plan(store, select_statement)
    assert steps == [f"SEARCH {table} USING INDEX ix_{table}_modified_at (modified_at>?)"], steps


@pytest.fixture
def filled(store: Store, tier: MemoryTier) -> Store:
    memory = store.tier(tier)
    for chunk in range(4):
        memory.write_many(
            [LocalWrite.add(f"i{chunk}-{n}", {"n": n, "episode_id": "e"}) for n in range(500)]
        )
    return store


def test_get_modified_since_uses_the_modified_at_index(filled: Store, tier: MemoryTier) -> None:
    memory = filled.tier(tier)
    assert_range_scan(filled, memory.spec.table.name, lambda: memory.get_modified_since(0))


@pytest.mark.parametrize(
    "options",
    [
        {"limit": 100},
        {"exclude_received_from": "node-b"},
        {"limit": 5, "exclude_received_from": "x"},
        {"limit": 50, "live_only": True},
    ],
    ids=repr,
)
def test_delta_queries_use_the_modified_at_index(
    filled: Store, tier: MemoryTier, options: dict[str, Any]
) -> None:
    spec = filled.tier(tier).spec

    def run() -> None:
        with filled.read() as conn:
            modified_since(conn, spec, 12345, **options)

    assert_range_scan(filled, spec.table.name, run)


@pytest.mark.parametrize("limit", [None, 10])
def test_the_cli_conflicts_of_one_item_are_an_index_search(store: Store, limit: int | None) -> None:
    """Migration 0003 dropped ix_conflicts_tier_item: the pair's unique index, which starts with
    (tier, item_id), finds an item's rows. They come out in pair order, so ordering them by id
    takes a sort of that item's rows (few, for any item that is not pathological)."""
    args = argparse.Namespace(
        tier=1, item="x", peer=None, lost_by=None, won_by=None, since=None, until=None, limit=limit
    )
    statement = conflict_query(args).compile(
        dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}
    )
    steps = plan(store, str(statement))
    assert steps[0].startswith("SEARCH conflicts USING INDEX sqlite_autoindex_conflicts_1"), steps
    assert "(tier=? AND item_id=?)" in steps[0], steps
    assert steps[1:] == ["USE TEMP B-TREE FOR ORDER BY"], steps
