"""get_modified_since is an index range scan on modified_at: the plans of the very statements
the code runs (SQLite's EXPLAIN QUERY PLAN; PostgreSQL's EXPLAIN, on a tier large enough and
analyzed, for the delta a sync round reads: the changes after a peer's cursor)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from memrepl.cli.conflict_cmds import conflict_query
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import LocalWrite, Store
from memrepl.storage.items import modified_since

from ..files import query
from .plans import analyze, plan, reads_through
from .sqltrace import statements_run


def assert_range_scan(store: Store, table: str, action: Callable[[], object]) -> None:
    (select_statement,) = [sql for sql in statements_run(store, action) if sql.startswith("SELECT")]
    steps = plan(store, select_statement)
    if store.engine.dialect.name == "sqlite":
        assert steps == [f"SEARCH {table} USING INDEX ix_{table}_modified_at (modified_at>?)"]
    else:
        assert reads_through(steps, f"ix_{table}_modified_at", table), steps


@pytest.fixture
def filled(store: Store, tier: MemoryTier) -> Store:
    """2,000 items (on PostgreSQL, analyzed: enough for the planner to prefer the index for a
    round's delta)."""
    memory = store.tier(tier)
    for chunk in range(4):
        memory.write_many(
            [LocalWrite.add(f"i{chunk}-{n}", {"n": n, "episode_id": "e"}) for n in range(500)]
        )
    analyze(store)
    return store


def recent_cursor(store: Store, tier: MemoryTier, backend: str) -> int:
    """A cursor the delta of a sync round starts from: SQLite's plan does not depend on it
    (12345: every row); on PostgreSQL, the 100th change from the end."""
    if backend == "sqlite":
        return 12345
    stamps = [record["modified_at"] for record in store.tier(tier).get_modified_since(0)]
    return int(stamps[-100])


def test_get_modified_since_uses_the_modified_at_index(
    filled: Store, tier: MemoryTier, backend: str
) -> None:
    memory = filled.tier(tier)
    since = 0 if backend == "sqlite" else recent_cursor(filled, tier, backend)
    assert_range_scan(filled, memory.spec.table.name, lambda: memory.get_modified_since(since))


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
    filled: Store, tier: MemoryTier, options: dict[str, Any], backend: str
) -> None:
    spec = filled.tier(tier).spec
    since = recent_cursor(filled, tier, backend)

    def run() -> None:
        with filled.read() as conn:
            modified_since(conn, spec, since, **options)

    assert_range_scan(filled, spec.table.name, run)


@pytest.mark.sqlite_only
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


@pytest.mark.backends("postgresql")
@pytest.mark.parametrize("limit", [None, 10])
def test_the_conflicts_of_one_item_are_an_index_search_on_postgresql(
    store: Store, db_path: str, limit: int | None
) -> None:
    """The same query on PostgreSQL, among 3,000 logged pairs: the pair's unique constraint
    (uq_conflicts_pair, which starts with tier and item_id) finds the item's rows."""
    query(
        db_path,
        "INSERT INTO conflicts (tier, item_id, winner_ts, winner_origin, winner_content, "
        "winner_deleted, winner_context, loser_ts, loser_origin, loser_content, loser_deleted, "
        "loser_context, resolved_content, rule, peer_id, batch_id, detected_at_ns) "
        "SELECT 1, 'item-' || (n % 1000), n, 'node-b', '{}', false, '{}', n, 'node-a', '{}', "
        "false, '{}', '{}', 'lww', 'node-b', NULL, n FROM generate_series(1, 3000) AS n",
    )
    analyze(store)
    args = argparse.Namespace(
        tier=1, item="x", peer=None, lost_by=None, won_by=None, since=None, until=None, limit=limit
    )
    statement = conflict_query(args).compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
    )
    steps = plan(store, str(statement))
    assert reads_through(steps, "uq_conflicts_pair", "conflicts"), steps
