"""Keyword search (FTS5, BM25): what is indexed, that the index is exact as rows change (writes,
deletes, expiry, eviction), namespaces and filters, bad input refused untouched, restarts,
rebuilds and the migration that creates the index."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from hypothesis import given
from hypothesis import strategies as st

import memrepl.aio
from memrepl.errors import InvalidFilterError, InvalidQueryError, RecallError
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import Store, keyword
from memrepl.storage.migrate import alembic_config
from memrepl.storage.schema import TIER_SPECS

from ..conftest import Location
from ..files import dump, intact, is_postgres, query, table_names
from .conftest import alembic_cli


def ids(results: object) -> list[str]:
    return [hit.item_id for hit in results]  # type: ignore[attr-defined]


def test_every_string_value_is_indexed_not_keys_or_numbers(store: Store) -> None:
    for tier in MemoryTier:
        store.tier(tier).add(
            "x",
            {
                "title": "Café de Flore",
                "nested": {"tags": ["Paris", {"deep": "croissant"}]},
                "n": 42,
            },
        )
    for word in ("cafe", "CAFÉ", "flore", "paris", "croissant"):
        assert sorted(hit.tier for hit in store.search(word)) == list(MemoryTier), word
    for word in ("title", "nested", "tags", "42"):
        assert ids(store.search(word)) == [], word


def test_updates_rerank_and_deletes_disappear_at_once(store: Store) -> None:
    memory = store.episodic
    memory.add("a", {"text": "tea tea tea and more tea"})
    memory.add("b", {"text": "tea once among many other different words here"})
    assert ids(memory.search("tea")) == ["a", "b"]
    memory.update("a", {"text": "coffee now, with one tea somewhere in a long sentence of words"})
    memory.update("b", {"text": "tea tea tea tea"})
    assert ids(memory.search("tea")) == ["b", "a"]
    memory.merge("a", {"text": "only coffee"})
    assert ids(memory.search("tea")) == ["b"]
    memory.delete("b")
    assert ids(memory.search("tea")) == []
    assert ids(memory.search("coffee")) == ["a"]


def test_hits_carry_what_an_agent_needs(store: Store) -> None:
    record = store.working.add("w", {"fact": "alice likes tea"}, namespace=("users", "alice"))
    (hit,) = store.search("tea")
    assert (hit.tier, hit.item_id, hit.namespace, hit.key) == (
        MemoryTier.WORKING,
        "w",
        ("users", "alice"),
        None,
    )
    assert hit.content == {"fact": "alice likes tea"}
    assert hit.timestamp_ns == record["timestamp_ns"] and hit.origin_node == "node-a"
    assert hit.score is not None and hit.extras == {"pinned": False, "expires_at_ns": None}
    # Searching is a read: no access counted, nothing changed.
    assert store.working.get_by_id("w")["access_count"] == 1  # type: ignore[index]


def test_namespace_is_a_prefix_and_no_query_lists_recent_first(store: Store) -> None:
    store.working.add("alice", {"t": "tea"}, namespace=("users", "alice"))
    store.working.add("alice-facts", {"t": "tea"}, namespace=("users", "alice", "facts"))
    store.working.add("alice-x", {"t": "tea"}, namespace=("users", "alice-x"))
    store.working.add("bob", {"t": "tea"}, namespace=("users", "bob"))
    store.working.add("none", {"t": "tea"})
    assert sorted(ids(store.search("tea", namespace=("users", "alice")))) == [
        "alice",
        "alice-facts",
    ]
    assert ids(store.search("tea", namespace=("users", "bob"))) == ["bob"]
    assert len(store.search("tea")) == 5
    assert ids(store.search(namespace=("users",))) == ["bob", "alice-x", "alice-facts", "alice"]
    assert ids(store.search(namespace=("users",), limit=2, offset=1)) == ["alice-x", "alice-facts"]
    assert store.search(namespace=("users",))[0].score is None


def test_expired_and_evicted_items_are_never_returned(opener: Callable[..., Store]) -> None:
    now = [time.time_ns()]
    store = opener(wall=lambda: now[0], working_capacity=3)
    store.working.add("short", {"t": "tea"}, ttl_s=1)
    assert ids(store.working.search("tea")) == ["short"]
    now[0] += 2 * 10**9
    assert ids(store.working.search("tea")) == []  # expired: read-time, before any cleanup
    for index in range(6):
        store.working.add(f"w{index}", {"t": f"tea {index}"}, priority=index % 5)  # type: ignore[arg-type]
    live = {record["item_id"] for record in store.working.get_modified_since(0)}
    assert len(live) <= 3
    assert set(ids(store.working.search("tea", limit=100))) == live


FILTER_CASES: list[tuple[dict[str, object], list[str]]] = [
    ({"color": "red"}, ["a"]),
    ({"n": 1}, ["a"]),  # 1 == 1.0
    ({"n": {"$gte": 2}}, ["b", "c"]),
    ({"n": {"$gt": 1, "$lt": 3}}, ["b"]),
    ({"n": {"$ne": 2}}, ["a", "c", "d"]),  # $ne matches an absent field
    ({"flag": True}, ["b"]),  # true is not 1
    ({"flag": 1}, ["d"]),
    ({"gone": None}, ["a", "b", "c", "d"]),  # None: null or absent
    ({"color": {"$ne": None}}, ["a", "b", "d"]),
    ({"who.name": "alice"}, ["c"]),
    ({"color": {"$gt": "blue"}}, ["a"]),  # strings compare with strings only
    ({"color": "red", "n": 2}, []),
]


@pytest.mark.parametrize(("filter_", "expected"), FILTER_CASES)
def test_filters_match_content_fields(
    store: Store, filter_: dict[str, object], expected: list[str]
) -> None:
    store.working.add("a", {"t": "x", "color": "red", "n": 1.0})
    store.working.add("b", {"t": "x", "color": "blue", "n": 2, "flag": True})
    store.working.add("c", {"t": "x", "n": 3, "who": {"name": "alice"}})
    store.working.add("d", {"t": "x", "color": 7, "flag": 1})
    assert sorted(ids(store.search("x", filter=filter_))) == expected
    assert sorted(ids(store.search(filter=filter_))) == expected


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"filter": {"": 1}}, InvalidFilterError),
        ({"filter": {"a..b": 1}}, InvalidFilterError),
        ({"filter": {"a": {"$regex": "x"}}}, InvalidFilterError),
        ({"filter": {"a": {"$gt": None}}}, InvalidFilterError),
        ({"filter": {"a": {"b": 1}}}, InvalidFilterError),  # an object is not a plain value
        ({"filter": {"a": {"$gt": [1]}}}, InvalidFilterError),
        ({"filter": {3: 1}}, InvalidFilterError),
        ({"filter": ["a"]}, InvalidFilterError),
        ({"query": "tea AND", "syntax": "fts5"}, InvalidQueryError),
        ({"query": '"unterminated', "syntax": "fts5"}, InvalidQueryError),
        ({"query": "nocolumn:tea", "syntax": "fts5"}, InvalidQueryError),
        ({"query": "tea", "syntax": "regex"}, InvalidQueryError),
        ({"query": "tea", "limit": -1}, RecallError),
        ({"query": "tea", "mode": "vector"}, RecallError),  # no embedder attached
        ({"query": "tea", "namespace": ("users", "")}, RecallError),
    ],
)
def test_bad_search_input_is_a_specific_error_and_changes_nothing(
    store: Store, db_path: Path, arguments: dict[str, object], error: type[Exception]
) -> None:
    store.working.add("a", {"t": "tea"})
    before = dump(db_path)
    with pytest.raises(error):
        store.search(**arguments)  # type: ignore[arg-type]
    assert dump(db_path) == before


def test_plain_words_always_work(store: Store) -> None:
    store.working.add("a", {"t": "tea AND (coffee) NEAR"})
    for text in ("tea AND", '"unterminated tea', "tea:", "NOT tea", "(", "*", "tea*", "''"):
        store.search(text)  # never an error
    assert ids(store.search('"tea AND')) == ["a"]
    assert ids(store.search("water OR coffee")) == ["a"]  # words are OR-ed
    assert ids(store.search("???")) == []
    assert ids(store.search("coff*", syntax="fts5")) == ["a"]


def test_the_index_survives_a_restart_and_a_rebuild_gives_the_same_results(
    opener: Callable[..., Store], db_path: Path
) -> None:
    store = opener()
    words = ["alpha", "beta", "gamma", "delta"]
    for index in range(40):
        text = " ".join(words[(index * j) % 4] for j in range(1, index % 7 + 2))
        store.tier(MemoryTier(index % 3 + 1)).add(f"i{index}", {"t": text})
    store.episodic.delete("i4")
    store.working.update("i3", {"t": "gamma only"})

    def snapshot(s: Store) -> list[list[tuple[str, float | None]]]:
        return [[(h.item_id, h.score) for h in s.search(w, limit=100)] for w in words]

    before = snapshot(store)
    store.close()
    reopened = opener()
    assert snapshot(reopened) == before
    counts = reopened.rebuild_indexes()
    assert counts == {
        tier: query(
            db_path, f"SELECT count(*) FROM {TIER_SPECS[tier].table.name} WHERE NOT deleted"
        )[0][0]
        for tier in MemoryTier
    }
    assert snapshot(reopened) == before
    assert intact(db_path)


def test_the_asyncio_twin_searches_and_rebuilds(db_path: Path) -> None:
    async def main() -> None:
        store = await memrepl.aio.open(db_path, node_id="node-a")
        try:
            await store.episodic.add("e", {"t": "tea"}, namespace=("users", "alice"))
            assert ids(await store.search("tea", namespace=("users",))) == ["e"]
            assert ids(await store.episodic.search("tea")) == ["e"]
            assert (await store.rebuild_indexes())[MemoryTier.EPISODIC] == 1
        finally:
            await store.close()

    asyncio.run(main())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=3), json_values, max_size=4))
def test_the_migrations_index_what_the_code_indexes(content: dict[str, object]) -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    newest = scripts.get_revision("0010")
    assert newest is not None
    for spec in TIER_SPECS.values():
        assert newest.module.statements(spec.table.name) == keyword.ddl(spec)
    text = json.dumps(content)
    for revision in ("0006", "0010"):
        script = scripts.get_revision(revision)
        assert script is not None
        frozen = script.module.indexed_text(json.loads(text))
        assert frozen == keyword.indexed_text(json.loads(text)), revision


def index_entries(path: Location | None) -> list[tuple[object, ...]]:
    """Every (word, rowid, offset) of the episodic tier's index (on PostgreSQL, every (rowid,
    tsvector))."""
    if is_postgres(path):
        return query(path, "SELECT rowid, body::text FROM episodic_items_fts ORDER BY 1")
    conn = sqlite3.connect(path or ":memory:")
    try:
        conn.execute(
            "CREATE VIRTUAL TABLE temp.entries USING fts5vocab(main, episodic_items_fts, instance)"
        )
        return conn.execute("SELECT term, doc, offset FROM entries ORDER BY 1, 2, 3").fetchall()
    finally:
        conn.close()


def test_an_entry_is_keyed_by_created_at_and_kept_while_the_text_is(
    store: Store, db_path: Location
) -> None:
    memory = store.episodic
    created = memory.add("a", {"text": "tea with lemon", "n": 1}, namespace=("users", "x"))
    memory.add("b", {"text": "coffee"})
    stamp = created["created_at_ns"]
    assert matching(db_path, "lemon") == [(stamp,)]
    index = dump_index(db_path)
    # Writes that leave the text as it was leave the index as it was.
    memory.merge("a", {"n": 2})
    memory.update("a", {"text": "tea with lemon", "n": 3}, namespace=("users", "y"))
    assert dump_index(db_path) == index
    assert ids(store.search("lemon", namespace=("users", "y"))) == ["a"]
    # A new text replaces the old one under the same rowid.
    memory.update("a", {"text": "tea with honey"})
    assert matching(db_path, "honey") == [(stamp,)]
    assert ids(store.search("lemon")) == []
    memory.delete("a")
    assert ids(store.search("honey")) == []
    memory.add("a", {"text": "tea again"})  # resurrected: the row and its rowid are the same
    assert matching(db_path, "again") == [(stamp,)]
    before = index_entries(db_path)
    store.rebuild_indexes()
    assert index_entries(db_path) == before


def matching(path: Location, word: str) -> list[tuple[object, ...]]:
    """The rowids of the episodic index's entries that hold ``word``."""
    if is_postgres(path):
        return query(
            path, "SELECT rowid FROM episodic_items_fts WHERE body @@ CAST(? AS TSQUERY)", word
        )
    return query(
        path, f"SELECT rowid FROM episodic_items_fts WHERE episodic_items_fts MATCH '{word}'"
    )


def dump_index(path: Location) -> list[tuple[object, ...]]:
    """The episodic index's own tables, row by row (equal dumps: the index was not written; on
    PostgreSQL each row's physical place, which any write of it changes)."""
    if is_postgres(path):
        return query(
            path, "SELECT ctid::text, rowid, body::text FROM episodic_items_fts ORDER BY 2"
        )
    return [
        row
        for shadow in ("data", "idx", "docsize")
        for row in query(path, f"SELECT * FROM episodic_items_fts_{shadow} ORDER BY 1")
    ]


def test_the_migration_indexes_existing_items(opener: Callable[..., Store], db_path: Path) -> None:
    store = opener()
    store.working.add("old", {"t": "written before the index"})
    store.episodic.add("gone", {"t": "written before"})
    store.episodic.delete("gone")
    store.close()
    for step in ("0004", "head"):
        alembic_to(db_path, "downgrade" if step == "0004" else "upgrade", step)
        if step == "0004":
            assert not [name for name in table_names(db_path) if "_fts" in name]
    assert ids(opener().search("before")) == ["old"]


def settings(db_path: Path) -> list[tuple[object, ...]]:
    """Each index's FTS5 automerge setting (4 when never set)."""
    found = []
    for fts in keyword.FTS_TABLES:
        rows = query(db_path, f"SELECT v FROM {fts}_config WHERE k = 'automerge'")
        found.append(rows[0] if rows else (4,))
    return found


@pytest.mark.sqlite_only
def test_a_new_store_has_the_settings(store: Store, db_path: Path) -> None:
    assert settings(db_path) == [(value,) for _, value in keyword.SETTINGS] * 3


def alembic_to(db_path: Path, command: str, revision: str) -> None:
    done = alembic_cli("-x", f"db={db_path}", command, revision)
    assert done.returncode == 0, done.stderr


@pytest.mark.sqlite_only
def test_migration_0010_rekeys_the_index_as_the_code_builds_it(
    opener: Callable[..., Store], db_path: Path
) -> None:
    store = opener()
    for n in range(30):
        store.episodic.add(f"e{n}", {"t": f"word{n % 4} shared", "n": n})
    store.episodic.update("e3", {"t": "changed text"})
    store.episodic.delete("e4")
    store.close()
    alembic_to(db_path, "downgrade", "0009")
    # Before 0010 the index is keyed by modified_at, and a hand-written row may share a stamp.
    stamps = query(db_path, "SELECT item_id, modified_at FROM episodic_items WHERE deleted = 0")
    found = query(
        db_path, "SELECT rowid FROM episodic_items_fts WHERE episodic_items_fts MATCH 'changed'"
    )
    assert found == [(dict(stamps)["e3"],)]
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute(
            "UPDATE episodic_items SET created_at_ns = "
            "(SELECT created_at_ns FROM episodic_items WHERE item_id = 'e1') "
            "WHERE item_id = 'e2'"
        )
    conn.close()
    assert settings(db_path) == [(4,)] * 3  # FTS5's default
    alembic_to(db_path, "upgrade", "head")
    assert settings(db_path) == [(16,)] * 3
    created = dict(query(db_path, "SELECT item_id, created_at_ns FROM episodic_items"))
    assert len(set(created.values())) == len(created)  # the duplicate got a stamp of its own
    migrated = index_entries(db_path)
    assert {rowid for _, rowid, _ in migrated} == {created[f"e{n}"] for n in range(30) if n != 4}
    reopened = opener()
    assert ids(reopened.search("changed")) == ["e3"]
    assert len(reopened.search("shared", limit=100)) == 28
    reopened.rebuild_indexes()
    assert index_entries(db_path) == migrated


# -- what differs on PostgreSQL (README, "Recall": keyword search on PostgreSQL) -----------------


#: FTS5 syntax PostgreSQL's tsquery has no counterpart for: what the refusal names, and what
#: SQLite finds (the index has one column, body: excluding it leaves nothing to match).
UNSUPPORTED_ON_POSTGRESQL = {
    "^tea": ("'^' (the first token)", ["a"]),
    "- body : tea": ("excluding a column", []),
}


@pytest.mark.parametrize("expression", list(UNSUPPORTED_ON_POSTGRESQL))
def test_what_postgresql_cannot_express_is_refused_there_and_works_on_sqlite(
    store: Store, db_path: Path, backend: str, expression: str
) -> None:
    what, on_sqlite = UNSUPPORTED_ON_POSTGRESQL[expression]
    store.working.add("a", {"t": "tea first"})
    if backend == "sqlite":
        assert ids(store.search(expression, syntax="fts5")) == on_sqlite
        return
    before = dump(db_path)
    with pytest.raises(InvalidQueryError) as caught:
        store.search(expression, syntax="fts5")
    assert f"{what} is not supported on PostgreSQL" in str(caught.value)
    assert caught.value.code == InvalidQueryError.code
    assert ids(store.search("tea first")) == ["a"]  # plain words always work
    assert dump(db_path) == before


def test_near_matches_every_phrase_however_far_apart_on_postgresql(
    store: Store, backend: str
) -> None:
    store.working.add("close", {"t": "tea and coffee"})
    store.working.add("far", {"t": "tea " + "word " * 20 + "coffee"})
    store.working.add("one", {"t": "tea alone"})
    found = sorted(ids(store.search("NEAR(tea coffee, 3)", syntax="fts5")))
    assert found == (["close"] if backend == "sqlite" else ["close", "far"])


@pytest.mark.backends("postgresql")
def test_keyword_search_reads_through_the_gin_index_on_postgresql(
    store: Store, db_path: str
) -> None:
    """Once (auto)vacuum has moved new entries out of the GIN index's pending list: until then
    the planner counts the cost of reading that list on every search, and may scan instead."""
    from memrepl.storage.backends import postgresql_search

    from ..files import pg_connection
    from .plans import plan, reads_through

    store.working.write_many(
        [
            memrepl.LocalWrite.add(f"i{n}", {"t": f"word{n % 2_000} common text {n}"})
            for n in range(10_000)
        ]
    )
    with pg_connection(db_path, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE working_items_fts")
    wanted = postgresql_search.tsquery('"word7"')
    steps = plan(
        store,
        "SELECT rowid FROM working_items_fts WHERE body @@ CAST(%s AS TSQUERY)",
        (wanted,),
    )
    assert reads_through(steps, "working_items_fts_body", "working_items_fts"), steps
