"""Keyword search (FTS5, BM25): what is indexed, that the index is exact as rows change (writes,
deletes, expiry, eviction), namespaces and filters, bad input refused untouched, restarts,
rebuilds and the migration that creates the index."""

from __future__ import annotations

import asyncio
import json
import subprocess
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

from ..files import dump, query
from .conftest import PYTHON, REPO, subprocess_env


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
            db_path, f"SELECT count(*) FROM {TIER_SPECS[tier].table.name} WHERE deleted = 0"
        )[0][0]
        for tier in MemoryTier
    }
    assert snapshot(reopened) == before
    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]


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
def test_the_migration_indexes_what_the_code_indexes(content: dict[str, object]) -> None:
    script = ScriptDirectory.from_config(alembic_config()).get_revision("0006")
    assert script is not None
    for spec in TIER_SPECS.values():
        assert script.module.statements(spec.table.name) == keyword.ddl(spec)
    text = json.dumps(content)
    assert script.module.indexed_text(json.loads(text)) == keyword.indexed_text(json.loads(text))


def test_the_migration_indexes_existing_items(opener: Callable[..., Store], db_path: Path) -> None:
    store = opener()
    store.working.add("old", {"t": "written before the index"})
    store.episodic.add("gone", {"t": "written before"})
    store.episodic.delete("gone")
    store.close()
    alembic = [PYTHON, "-m", "alembic", "-x", f"db={db_path}"]
    for step in ("0004", "head"):
        command = "downgrade" if step == "0004" else "upgrade"
        done = subprocess.run(
            [*alembic, command, step],
            cwd=REPO,
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        if step == "0004":
            assert query(db_path, "SELECT name FROM sqlite_master WHERE name LIKE '%_fts%'") == []
    assert ids(opener().search("before")) == ["old"]
