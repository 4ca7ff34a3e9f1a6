"""The same random sequences of operations on ``MemreplStore`` and on LangGraph's own stores
(``InMemoryStore``, ``SqliteStore``) give the same answers, where LangGraph's stores agree with
each other; where memrepl chooses differently, the README says so and the test says which.

- ``get``: the same item (namespace, key, value) or None, against both.
- ``search`` without a query: the same items as ``InMemoryStore`` for every filter (``$ne``
  matches an absent field in both; ``SqliteStore``'s does not, so it is compared only on filters
  without ``$ne``), ordered most recently written first (``SqliteStore``'s order, which keeps
  second-resolution timestamps: memrepl's is exact), and every page is a slice of that order.
- ``list_namespaces``: exactly ``SqliteStore``'s answer (``InMemoryStore`` keeps listing a
  namespace whose last item was deleted; memrepl and ``SqliteStore`` do not).
- vector search with the same deterministic embedding function: the same items, in the same
  order, with the same cosine scores as ``InMemoryStore``, for default and per-put fields, with
  filters, limit and offset (items put with ``index=False`` are not ranked by either; only
  ``InMemoryStore`` appends them, unscored, after the ranked ones). One put per item: on a
  re-put, ``InMemoryStore`` keeps the vectors of fields the new put does not index.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.store.base import BaseStore, Item
from langgraph.store.memory import InMemoryStore
from langgraph.store.sqlite import SqliteStore

import memrepl
from memrepl.integrations.langgraph import MemreplStore

from .conftest import DIMS, embed

LABELS = st.sampled_from(["a", "b", "c"])
NAMESPACES = st.lists(LABELS, min_size=1, max_size=3).map(tuple)
PREFIXES = st.lists(LABELS, max_size=3).map(tuple)
PATTERNS = st.lists(st.sampled_from(["a", "b", "c", "*"]), max_size=3).map(tuple)
KEYS = st.sampled_from(["k1", "k2", "k3"])
VALUES = st.fixed_dictionaries(
    {"n": st.integers(-3, 3), "s": st.sampled_from(["x", "y", "z"])},
    optional={"t": st.sampled_from(["p", "q"])},
)
CONDITIONS = st.one_of(
    st.tuples(st.just("n"), st.integers(-3, 3)),
    st.tuples(
        st.just("n"),
        st.dictionaries(
            st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]),
            st.integers(-3, 3),
            min_size=1,
            max_size=2,
        ),
    ),
    st.tuples(st.sampled_from(["s", "t"]), st.sampled_from(["x", "y", "p", "q"])),
    st.tuples(st.sampled_from(["s", "t"]), st.just({"$ne": "p"}) | st.just({"$ne": "x"})),
)
FILTERS = st.none() | st.lists(CONDITIONS, max_size=2).map(dict)
OPERATIONS = st.one_of(
    st.tuples(st.just("put"), NAMESPACES, KEYS, VALUES),
    st.tuples(st.just("put"), NAMESPACES, KEYS, VALUES),
    st.tuples(st.just("delete"), NAMESPACES, KEYS),
    st.tuples(st.just("get"), NAMESPACES, KEYS),
    st.tuples(st.just("search"), PREFIXES, FILTERS, st.integers(1, 6), st.integers(0, 4)),
    st.tuples(
        st.just("list"),
        PATTERNS,
        PATTERNS,
        st.none() | st.integers(1, 3),
        st.integers(1, 6),
        st.integers(0, 3),
    ),
)


def triple(item: Item | None) -> tuple[tuple[str, ...], str, str] | None:
    """An item's namespace, key and value (as sorted JSON: hashable)."""
    if item is None:
        return None
    return (tuple(item.namespace), item.key, json.dumps(item.value, sort_keys=True))


def has_ne(filter: dict[str, Any] | None) -> bool:
    return any(isinstance(c, dict) and "$ne" in c for c in (filter or {}).values())


@contextmanager
def memrepl_store(**options: Any) -> Iterator[MemreplStore]:
    with tempfile.TemporaryDirectory() as directory:
        opened = memrepl.open(Path(directory) / "m.db", node_id="m")
        store = MemreplStore(opened, **options)
        try:
            yield store
        finally:
            store.close()
            opened.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPERATIONS, min_size=1, max_size=30))
def test_the_same_operations_give_langgraphs_answers(operations: list[tuple[Any, ...]]) -> None:
    with memrepl_store() as ours, SqliteStore.from_conn_string(":memory:") as lite:
        lite.setup()
        memory = InMemoryStore()
        stores: list[BaseStore] = [ours, memory, lite]
        written: dict[tuple[tuple[str, ...], str], int] = {}
        for step, operation in enumerate(operations):
            kind = operation[0]
            if kind == "put":
                _, namespace, key, value = operation
                for store in stores:
                    store.put(namespace, key, value)
                written[(namespace, key)] = step
            elif kind == "delete":
                _, namespace, key = operation
                for store in stores:
                    store.delete(namespace, key)
                written.pop((namespace, key), None)
            elif kind == "get":
                _, namespace, key = operation
                answers = [triple(store.get(namespace, key)) for store in stores]
                assert answers[0] == answers[1] == answers[2], operation
            elif kind == "search":
                _, prefix, filter, limit, offset = operation
                everything = ours.search(prefix, filter=filter, limit=1000)
                found = {triple(item) for item in everything}
                assert found == {
                    triple(i) for i in memory.search(prefix, filter=filter, limit=1000)
                }
                if not has_ne(filter):
                    assert found == {
                        triple(i) for i in lite.search(prefix, filter=filter, limit=1000)
                    }
                order = [(tuple(item.namespace), item.key) for item in everything]
                assert order == sorted(order, key=lambda place: -written[place])
                page = ours.search(prefix, filter=filter, limit=limit, offset=offset)
                assert [triple(i) for i in page] == [
                    triple(i) for i in everything[offset : offset + limit]
                ]
            else:
                _, prefix, suffix, depth, limit, offset = operation
                options = {
                    "prefix": prefix or None,
                    "suffix": suffix or None,
                    "max_depth": depth,
                    "limit": limit,
                    "offset": offset,
                }
                assert ours.list_namespaces(**options) == lite.list_namespaces(**options), options


WORDS = st.sampled_from(["red apple pie", "green tea", "apple tea", "blue sky"])
ITEMS = st.lists(
    st.tuples(
        KEYS | st.sampled_from(["k4", "k5", "k6"]),
        WORDS,
        st.integers(0, 3),
        st.lists(st.sampled_from(["apple", "sky", "tea cup"]), max_size=3, unique=True),
        st.sampled_from([None, None, False, ["text"], ["notes[*]"], ["text", "notes[*]"]]),
    ),
    min_size=1,
    max_size=8,
    # One put per key: InMemoryStore keeps an item's vectors of fields a later put no longer
    # indexes (found by text it no longer has); memrepl replaces them (see
    # test_langgraph_vectors.py), so re-puts are compared there, not here.
    unique_by=lambda item: item[0],
)


def same_ranking(mine: list[Any], theirs: list[Any]) -> None:
    """Equal scores (to float32 precision) position by position, and the same items within each
    run of equal scores (their order there is each store's own)."""
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs, strict=True):
        assert abs(a.score - b.score) < 1e-5, (a, b)
    runs: list[tuple[set[str], set[str]]] = []
    for position, (a, b) in enumerate(zip(mine, theirs, strict=True)):
        if position == 0 or abs(a.score - mine[position - 1].score) > 1e-5:
            runs.append((set(), set()))
        runs[-1][0].add(a.key)
        runs[-1][1].add(b.key)
    # A run cut by the page's end may hold different items of that score: only whole runs.
    for ours_, theirs_ in runs[:-1]:
        assert ours_ == theirs_


SEARCHES = st.fixed_dictionaries(
    {
        "query": st.sampled_from(["apple", "tea", "sky", "red apple pie", "green"]),
        "filter": st.none() | st.just({"n": {"$gte": 1}}),
        "limit": st.integers(1, 5),
        "offset": st.integers(0, 3),
    }
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ITEMS, SEARCHES, st.sampled_from([None, ["text"], ["notes[*]"]]))
def test_vector_search_ranks_as_langgraph_does(
    items: list[tuple[str, str, int, list[str], Any]],
    search: dict[str, Any],
    fields: list[str] | None,
) -> None:
    config: dict[str, Any] = {"dims": DIMS, "embed": embed}
    if fields is not None:
        config["fields"] = fields
    with memrepl_store(index=config) as ours:
        memory = InMemoryStore(index=config)  # type: ignore[arg-type]
        for key, text, n, notes, index in items:
            # Each text names its key: two items never tie by holding the same words.
            value = {"text": f"{key} {text}", "n": n, "notes": [f"{key} {w}" for w in notes]}
            for store in (ours, memory):
                store.put(("docs",), key, value, index=index)
        # From the top (equal scores may straddle a page's start), then the page as a slice.
        top = {**search, "offset": 0, "limit": search["offset"] + search["limit"]}
        theirs = [item for item in memory.search(("docs",), **top) if item.score is not None]
        mine = ours.search(("docs",), **top)
        same_ranking(mine, theirs)
        page = ours.search(("docs",), **search)
        assert [triple(item) for item in page] == [
            triple(item) for item in mine[search["offset"] :]
        ]
