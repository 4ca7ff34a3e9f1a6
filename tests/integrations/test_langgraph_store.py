"""``MemreplStore`` does what LangGraph documents for a ``BaseStore``: each operation, the order of
a batch, namespace validation, filters, ``list_namespaces``, timestamps -- and refuses what memrepl
cannot hold without writing anything."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

import pytest
from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchOp,
)

from memrepl import keyed_id
from memrepl.errors import (
    InvalidContentError,
    InvalidFilterError,
    ItemTooLargeError,
    RecallError,
    StoreError,
)
from memrepl.errors import InvalidNamespaceError as MemreplNamespaceError
from memrepl.integrations.langgraph import MemreplStore
from memrepl.protocol.enums import MemoryTier

from ..clocks import Wall


def dump(path: Path | None) -> list[str]:
    assert path is not None
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def keys(items: list[Item]) -> list[str]:
    return [item.key for item in items]


def test_put_get_update_delete(store: MemreplStore) -> None:
    ns = ("users", "alice")
    assert store.get(ns, "prefs") is None
    store.put(ns, "prefs", {"theme": "dark", "size": 3})
    item = store.get(ns, "prefs")
    assert item is not None
    assert (item.namespace, item.key, item.value) == (ns, "prefs", {"theme": "dark", "size": 3})
    store.put(ns, "prefs", {"theme": "light"})  # a put replaces the whole value
    assert store.get(ns, "prefs").value == {"theme": "light"}  # type: ignore[union-attr]
    assert store.get(("users", "bob"), "prefs") is None  # the key is per namespace
    store.delete(ns, "prefs")
    assert store.get(ns, "prefs") is None
    store.delete(ns, "prefs")  # deleting what is gone is no error
    store.delete(ns, "never-there")
    store.put(ns, "prefs", {"theme": "blue"})  # and a delete can be undone by a put
    assert store.get(ns, "prefs").value == {"theme": "blue"}  # type: ignore[union-attr]


def test_put_of_none_is_a_delete(store: MemreplStore) -> None:
    store.put(("a",), "k", {"v": 1})
    store.batch([PutOp(("a",), "k", None)])
    assert store.get(("a",), "k") is None
    assert store.list_namespaces() == []


def test_values_are_copies_the_caller_may_change(store: MemreplStore) -> None:
    value = {"nested": {"list": [1, 2]}}
    store.put(("a",), "k", value)
    value["nested"]["list"].append(3)
    got = store.get(("a",), "k")
    assert got is not None and got.value == {"nested": {"list": [1, 2]}}
    got.value["nested"]["list"].append(4)
    assert store.get(("a",), "k").value == {"nested": {"list": [1, 2]}}  # type: ignore[union-attr]


def test_timestamps_are_aware_and_updated_at_moves(
    make_store: Callable[..., MemreplStore], wall: Wall
) -> None:
    store = make_store(wall=wall)
    store.put(("a",), "k", {"v": 1})
    first = store.get(("a",), "k")
    assert first is not None and first.created_at.tzinfo is UTC
    assert first.created_at == first.updated_at
    assert first.created_at.timestamp() == pytest.approx(wall.now / 1e9, abs=1e-3)
    wall.now += 5_000_000_000
    store.put(("a",), "k", {"v": 2})
    second = store.get(("a",), "k")
    assert second is not None
    assert second.created_at == first.created_at
    assert (second.updated_at - first.updated_at).total_seconds() == pytest.approx(5, abs=1e-3)
    [hit] = store.search(("a",))
    assert (hit.created_at, hit.updated_at) == (second.created_at, second.updated_at)


def test_a_key_is_one_item_under_its_keyed_id(store: MemreplStore) -> None:
    store.put(("users", "alice"), "a long key: with spaces, colons / and slashes", {"v": 1})
    record = store.store.episodic.get_by_id(
        keyed_id(("users", "alice"), "a long key: with spaces, colons / and slashes")
    )
    assert record is not None
    assert record["namespace"] == ("users", "alice")
    assert record["key"] == "a long key: with spaces, colons / and slashes"


def test_a_batch_reads_first_then_puts_and_the_last_put_wins(store: MemreplStore) -> None:
    store.put(("t",), "k", {"v": "old"})
    results = store.batch(
        [
            PutOp(("t",), "k", {"v": "first"}),
            GetOp(("t",), "k"),
            SearchOp(("t",)),
            PutOp(("t",), "k", {"v": "last"}),
            PutOp(("t",), "new", {"v": 1}),
            ListNamespacesOp(),
            GetOp(("t",), "new"),
        ]
    )
    assert results[0] is None and results[3] is None and results[4] is None
    assert isinstance(results[1], Item) and results[1].value == {"v": "old"}
    assert [item.value for item in results[2]] == [{"v": "old"}]  # type: ignore[union-attr]
    assert results[5] == [("t",)]
    assert results[6] is None
    assert store.get(("t",), "k").value == {"v": "last"}  # type: ignore[union-attr]
    assert store.get(("t",), "new") is not None


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.put((), "k", {"v": 1}),
        lambda s: s.put(("langgraph", "x"), "k", {"v": 1}),
        lambda s: s.put(("a.b",), "k", {"v": 1}),
        lambda s: s.put(("a", ""), "k", {"v": 1}),
        lambda s: s.put(("a", 1), "k", {"v": 1}),
        lambda s: s.get(("a.b",), "k"),
        lambda s: s.search(("a", "")),
        lambda s: s.list_namespaces(prefix=("a.b",)),
        lambda s: s.list_namespaces(suffix=("",)),
        lambda s: s.delete(("a\x00",), "k"),
        lambda s: s.batch([GetOp(("a",), "k"), PutOp(("a.b",), "k", {"v": 1})]),
    ],
)
def test_namespaces_are_checked_as_langgraph_does(
    store: MemreplStore, call: Callable[[MemreplStore], object]
) -> None:
    store.put(("a",), "k", {"v": 0})
    before = dump(store.store.path)
    with pytest.raises(InvalidNamespaceError):
        call(store)
    assert dump(store.store.path) == before


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"when": object()}, InvalidContentError),
        ({1: "x"}, InvalidContentError),
        ({"x": float("nan")}, InvalidContentError),
        ({"x": "y" * 70_000}, ItemTooLargeError),
    ],
)
def test_a_value_memrepl_cannot_hold_is_refused_and_nothing_is_written(
    store: MemreplStore, value: dict[object, object], error: type[Exception]
) -> None:
    store.put(("a",), "k", {"v": 0})
    before = dump(store.store.path)
    with pytest.raises(error):
        store.put(("a",), "k", value)  # type: ignore[arg-type]
    with pytest.raises(error):
        # With reads in the batch too: refused before the reads count their accesses.
        store.batch(
            [GetOp(("a",), "k"), PutOp(("a",), "other", {"v": 1}), PutOp(("a",), "k", value)]
        )  # type: ignore[arg-type]
    assert dump(store.store.path) == before


def test_a_key_memrepl_cannot_hold_is_refused(store: MemreplStore) -> None:
    before = dump(store.store.path)
    for key in ("", "a\x00b", "k" * 1025):
        with pytest.raises(MemreplNamespaceError):
            store.put(("a",), key, {"v": 1})
    assert dump(store.store.path) == before


FILTER_DATA = [
    ("a", {"status": "active", "score": 5, "author": {"name": "ann"}, "tags": "x"}),
    ("b", {"status": "active", "score": 2.5, "author": {"name": "bob"}}),
    ("c", {"status": "archived", "score": 9, "author": {"name": "ann"}}),
    ("d", {"status": None, "score": "high"}),
    ("e", {"other": True, "tags": ["x", "y"]}),
]


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ({"status": "active"}, {"a", "b"}),
        ({"status": {"$eq": "active"}}, {"a", "b"}),
        ({"status": {"$ne": "active"}}, {"c", "d", "e"}),
        ({"score": {"$gt": 2.5}}, {"a", "c"}),
        ({"score": {"$gte": 2.5}}, {"a", "b", "c"}),
        ({"score": {"$lt": 5}}, {"b"}),
        ({"score": {"$lte": 5, "$gt": 2}}, {"a", "b"}),
        ({"score": 5.0}, {"a"}),
        ({"status": "active", "score": {"$gt": 3}}, {"a"}),
        ({"status": None}, {"d", "e"}),
        ({"author": {"name": "ann"}}, {"a", "c"}),
        ({"author.name": "bob"}, {"b"}),
        ({"other": True}, {"e"}),
        ({"missing": {"$ne": 1}}, {"a", "b", "c", "d", "e"}),
        ({"tags": ["x", "y"]}, {"e"}),
        ({"tags": "x"}, {"a"}),
    ],
)
def test_filters(store: MemreplStore, filter: dict[str, object], expected: set[str]) -> None:
    for key, value in FILTER_DATA:
        store.put(("docs",), key, value)
    assert set(keys(store.search(("docs",), filter=filter, limit=100))) == expected


def test_a_filter_memrepl_cannot_run_is_refused(store: MemreplStore) -> None:
    for filter in ({"tags": {"$in": ["x"]}}, {"score": {"$gt": [1]}}):
        with pytest.raises(InvalidFilterError):
            store.search(("docs",), filter=filter)
        with pytest.raises(ValueError):  # as LangGraph's stores refuse a bad filter
            store.search(("docs",), filter=filter)


def test_search_without_query_lists_most_recent_first_in_pages(store: MemreplStore) -> None:
    for n in range(7):
        store.put(("docs", f"d{n % 2}"), f"k{n}", {"n": n})
    store.put(("docs", "d0"), "k0", {"n": 100})  # updated: now the most recent
    store.put(("other",), "x", {"n": -1})
    everything = keys(store.search(("docs",), limit=100))
    assert everything == ["k0", "k6", "k5", "k4", "k3", "k2", "k1"]
    pages = [keys(store.search(("docs",), limit=3, offset=o)) for o in (0, 3, 6, 9)]
    assert pages == [everything[0:3], everything[3:6], everything[6:], []]
    assert keys(store.search(("docs", "d1"), limit=100)) == ["k5", "k3", "k1"]
    assert all(item.score is None for item in store.search(("docs",)))
    assert len(store.search(())) == 8


def test_search_by_keyword_without_an_index(store: MemreplStore) -> None:
    store.put(("m",), "1", {"fact": "alice is allergic to peanuts"})
    store.put(("m",), "2", {"fact": "bob likes peanuts and cats"})
    store.put(("m",), "3", {"fact": "carol flies to lisbon"})
    hits = store.search(("m",), query="allergic peanuts")
    assert keys(hits) == ["1", "2"]
    assert hits[0].score is not None and hits[1].score is not None
    assert hits[0].score > hits[1].score
    assert store.search(("m",), query="zebra") == []


NAMESPACES = [
    ("a", "b", "c"),
    ("a", "b", "d", "e"),
    ("a", "b", "d", "i"),
    ("a", "b", "f"),
    ("a", "c", "f"),
    ("b", "a", "f"),
    ("users", "alice", "v1"),
]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, NAMESPACES),
        ({"prefix": ("a", "b"), "max_depth": 3},
         [("a", "b", "c"), ("a", "b", "d"), ("a", "b", "f")]),
        ({"prefix": ("a", "*", "f")}, [("a", "b", "f"), ("a", "c", "f")]),
        ({"suffix": ("f",)}, [("a", "b", "f"), ("a", "c", "f"), ("b", "a", "f")]),
        ({"suffix": ("*", "f")}, [("a", "b", "f"), ("a", "c", "f"), ("b", "a", "f")]),
        ({"prefix": ("a",), "suffix": ("f",)}, [("a", "b", "f"), ("a", "c", "f")]),
        ({"max_depth": 1}, [("a",), ("b",), ("users",)]),
        ({"max_depth": 2, "limit": 2, "offset": 1}, [("a", "c"), ("b", "a")]),
        ({"limit": 2}, NAMESPACES[:2]),
        ({"offset": 6}, NAMESPACES[6:]),
        ({"prefix": ("zzz",)}, []),
    ],
)  # fmt: skip
def test_list_namespaces(
    store: MemreplStore, options: dict[str, object], expected: list[tuple[str, ...]]
) -> None:
    for namespace in NAMESPACES:
        store.put(namespace, "k", {"v": 1})
    assert store.list_namespaces(**options) == expected  # type: ignore[arg-type]


def test_list_namespaces_with_several_conditions_of_one_kind(store: MemreplStore) -> None:
    for namespace in NAMESPACES:
        store.put(namespace, "k", {"v": 1})
    op = ListNamespacesOp(
        match_conditions=(
            MatchCondition("prefix", ("a",)),
            MatchCondition("prefix", ("*", "b")),
            MatchCondition("suffix", ("d", "*")),
            MatchCondition("suffix", ("e",)),
        ),
        limit=5,
    )
    assert store.batch([op]) == [[("a", "b", "d", "e")]]
    assert store.batch([ListNamespacesOp(match_conditions=(MatchCondition("prefix", ()),))]) == [
        NAMESPACES
    ]


def test_a_deleted_namespace_is_no_longer_listed(store: MemreplStore) -> None:
    store.put(("a",), "k", {"v": 1})
    store.put(("b",), "k", {"v": 1})
    store.delete(("a",), "k")
    assert store.list_namespaces() == [("b",)]


def test_items_live_in_the_chosen_tier(make_store: Callable[..., MemreplStore]) -> None:
    store = make_store(tier=MemoryTier.WORKING)
    store.put(("a",), "k", {"v": 1})
    assert store.store.working.get_by_id(keyed_id(("a",), "k")) is not None
    assert store.store.episodic.get_by_id(keyed_id(("a",), "k")) is None


def test_opening_by_path(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        MemreplStore(tmp_path / "x.db")
    with MemreplStore(tmp_path / "x.db", node_id="me") as store:
        store.put(("a",), "k", {"v": 1})
    with MemreplStore(tmp_path / "x.db", node_id="me") as store:
        assert store.get(("a",), "k") is not None
        with pytest.raises(StoreError):
            MemreplStore(store.store, node_id="someone-else")
    with pytest.raises(RecallError):
        MemreplStore(tmp_path / "y.db", node_id="me", search_mode="vector")
