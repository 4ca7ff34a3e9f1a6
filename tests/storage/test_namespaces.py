"""Namespaces and keys on every tier: writes file items, records carry them back, SQL sees the
indexed text, keyed ids are deterministic, bad input is refused untouched, and
``list_namespaces`` follows LangGraph's semantics."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import memrepl.aio
from memrepl.errors import InvalidNamespaceError
from memrepl.namespaces import (
    decode_namespace,
    encode_namespace,
    keyed_id,
    parse_namespace,
)
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import LocalWrite, Store

from ..files import dump, query

parts = st.text(min_size=1, max_size=8).filter(lambda part: "\x00" not in part)


@given(st.lists(parts, max_size=4).map(tuple))
def test_the_text_form_round_trips_and_keeps_prefixes(namespace: tuple[str, ...]) -> None:
    text = encode_namespace(namespace)
    assert decode_namespace(text) == namespace
    for cut in range(1, len(namespace)):
        assert text.startswith(encode_namespace(namespace[:cut]) + "/")


def test_a_slash_or_percent_inside_a_part_is_escaped() -> None:
    assert encode_namespace(("a/b", "50%", "c")) == "a%2Fb/50%25/c"
    assert parse_namespace("a%2Fb/50%25/c") == ("a/b", "50%", "c")
    for bad in ("a//b", "/a", "a/", "a%2fb", "100%"):
        with pytest.raises(InvalidNamespaceError):
            parse_namespace(bad)


def test_keyed_ids_are_deterministic_and_separate_namespaces() -> None:
    # A golden value: changing the layout would split every keyed item in two across versions.
    assert keyed_id(("users", "alice"), "favourite-food") == "dfd61ecd5ed4c54ce23a3ab9cf92d3e9"
    assert keyed_id(("users", "alice"), "k") != keyed_id(("users", "bob"), "k")
    assert keyed_id(("a", "b"), "c") != keyed_id(("a",), "b")
    long_key = "https://example.org/" + "x" * 200
    assert len(keyed_id(("docs",), long_key)) == 32


def test_writes_file_items_and_records_carry_it(store: Store, db_path: Path, backend: str) -> None:
    memory = store.episodic
    added = memory.add("e1", {"what": "met alice"}, namespace=("users", "alice"))
    assert (added["namespace"], added["key"]) == (("users", "alice"), None)
    # A write that names no namespace leaves the item where it is.
    assert memory.update("e1", {"what": "met alice again"})["namespace"] == ("users", "alice")
    assert memory.merge("e1", {"n": 1}, namespace=("users", "bob"))["namespace"] == (
        "users",
        "bob",
    )
    key_id = keyed_id(("users", "a/b"), "prefs")
    keyed = memory.add(key_id, {"theme": "dark"}, namespace=("users", "a/b"), key="prefs")
    assert (keyed["namespace"], keyed["key"]) == (("users", "a/b"), "prefs")
    assert memory.get_by_id(key_id)["key"] == "prefs"  # type: ignore[index]
    assert query(
        db_path, "SELECT item_id, namespace, item_key FROM episodic_items ORDER BY item_id"
    ) == [(key_id, "users/a%2Fb", "prefs"), ("e1", "users/bob", None)]
    if backend == "sqlite":  # PostgreSQL's plans: test_query_plan.py, on an analyzed tier
        plan = query(
            db_path, "EXPLAIN QUERY PLAN SELECT * FROM episodic_items WHERE namespace = 'x'"
        )
        assert "ix_episodic_items_namespace" in str(plan)


def test_every_tier_and_write_many_take_a_namespace(store: Store) -> None:
    for tier in MemoryTier:
        memory = store.tier(tier)
        records = memory.write_many(
            [
                LocalWrite.add("a", {"v": 1}, namespace=("t", tier.name)),
                LocalWrite.merge("a", {"w": 2}),
                LocalWrite.add("b", {"v": 2}),
            ]
        )
        assert [r["namespace"] for r in records] == [("t", tier.name), ("t", tier.name), ()]
        assert memory.get_modified_since(0)[0]["namespace"] == ("t", tier.name)


@pytest.mark.parametrize(
    ("namespace", "key", "item_id"),
    [
        (("users", ""), None, "x"),
        (("users", 3), None, "x"),
        ("users", None, "x"),
        (("users", "a\x00b"), None, "x"),
        (("n" * 1100,), None, "x"),
        (None, "k", "x"),
        (("users",), "k", "x"),  # not keyed_id(("users",), "k")
        (("users",), "", "x"),
    ],
)
def test_bad_namespaces_are_refused_and_change_nothing(
    store: Store,
    db_path: Path,
    namespace: object,
    key: str | None,
    item_id: str,
) -> None:
    store.working.add("kept", {"v": 1}, namespace=("ok",))
    before = dump(db_path)
    with pytest.raises(InvalidNamespaceError):
        store.working.write_many(
            [
                LocalWrite.add("fine", {"v": 2}),
                LocalWrite.add(item_id, {"v": 3}, namespace=namespace, key=key),  # type: ignore[arg-type]
            ]
        )
    assert dump(db_path) == before


def test_list_namespaces_follows_langgraph(opener: Callable[..., Store]) -> None:
    now = [time.time_ns()]
    store = opener(wall=lambda: now[0])
    for index, namespace in enumerate(
        [
            ("users", "alice"),
            ("users", "alice", "facts"),
            ("users", "bob"),  # deleted below
            ("users-x",),  # sorts between ("users",...) texts: must not count as under users
            ("users", "c/d"),
            ("docs", "v1"),
        ]
    ):
        store.working.add(f"w{index}", {"v": index}, namespace=namespace)
    store.working.delete("w2")
    store.episodic.add("e", {"v": 1}, namespace=("docs", "v2"))
    store.semantic.add("s", {"v": 1}, namespace=("cache", "x", "v1"))
    store.working.add("gone", {"v": 1}, namespace=("expired",), ttl_s=1)
    now[0] += 60 * 10**9  # a minute later: "gone" has expired
    later = store.list_namespaces
    assert later() == [
        ("cache", "x", "v1"),
        ("docs", "v1"),
        ("docs", "v2"),
        ("users", "alice"),
        ("users", "alice", "facts"),
        ("users", "c/d"),
        ("users-x",),
    ]
    assert later(("users",)) == [("users", "alice"), ("users", "alice", "facts"), ("users", "c/d")]
    assert later(("users",), max_depth=2) == [("users", "alice"), ("users", "c/d")]
    assert later(max_depth=1) == [("cache",), ("docs",), ("users",), ("users-x",)]
    assert later(suffix=("v1",)) == [("cache", "x", "v1"), ("docs", "v1")]
    assert later(("*", "alice")) == [("users", "alice"), ("users", "alice", "facts")]
    assert later(suffix=("*", "v1"), max_depth=1) == [("cache",), ("docs",)]
    assert later(limit=2, offset=1) == [("docs", "v1"), ("docs", "v2")]
    assert later(tiers=[MemoryTier.EPISODIC]) == [("docs", "v2")]
    for bad in ({"prefix": ("users", "")}, {"max_depth": 0}, {"limit": -1}, {"prefix": "users"}):
        with pytest.raises(InvalidNamespaceError):
            later(**bad)  # type: ignore[arg-type]


def test_the_asyncio_twin_files_and_lists(db_path: Path) -> None:
    async def main() -> None:
        store = await memrepl.aio.open(db_path, node_id="node-a")
        try:
            record = await store.working.merge("w", {"v": 1}, namespace=("users", "alice"))
            assert record["namespace"] == ("users", "alice")
            key_id = keyed_id(("users", "alice"), "k")
            await store.semantic.add(key_id, {"v": 2}, namespace=("users", "alice"), key="k")
            assert await store.list_namespaces() == [("users", "alice")]
            with pytest.raises(InvalidNamespaceError):
                await store.episodic.add("x", {"v": 1}, namespace=("",))
        finally:
            await store.close()

    asyncio.run(main())


def test_an_item_written_before_namespaces_existed_is_in_none(
    opener: Callable[..., Store], db_path: Path
) -> None:
    opener().working.add("old", {"v": 1})
    assert query(db_path, "SELECT namespace, item_key, namespace_ts FROM working_items") == [
        ("", None, 0)
    ]


def test_anti_entropy_digests_see_the_namespace(store: Store) -> None:
    from memrepl.storage import digests
    from memrepl.storage.items import load_items

    store.working.add("filed", {"v": 1}, namespace=("users", "alice"))
    store.working.add("plain", {"v": 1})
    with store.read() as conn:
        rows = load_items(conn, store.working.spec, ["filed", "plain"])
        # The digests kept in the write's transaction equal those recomputed from the rows.
        assert digests.find_errors(conn, store.working.spec) == {}
    filed, plain = rows["filed"], rows["plain"]
    unfiled = dataclasses.replace(
        filed, state=filed.state._replace(placement=plain.state.placement)
    )
    assert digests.item_hash(filed) != digests.item_hash(unfiled)
    # An item in no namespace hashes as it did before namespaces existed.
    values = (plain.item_id, plain.encoded_content(), *plain.state.whole)
    assert digests.item_hash(plain) == digests.row_hash(
        (
            *values,
            plain.state.whole_deleted,
            "{}",
            digests.encode_context(plain.state.context),
        )
    )
