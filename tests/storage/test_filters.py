"""Filters compare lists and objects as JSON values, and numbers as numbers do -- infinities
beyond every number, NaN equal to nothing, integers past 64 bits as floats -- in every search
path alike (with and without a query)."""

from __future__ import annotations

import pytest

from memrepl.errors import InvalidFilterError
from memrepl.storage import Store

INF = float("inf")


@pytest.fixture
def filled(store: Store) -> Store:
    store.episodic.add("a", {"t": "x", "tags": ["draft"], "o": {"k": 1, "l": [1, 2]}, "n": 5})
    store.episodic.add("b", {"t": "x", "tags": ["draft", "final"], "o": {"k": 1}, "n": 2**70})
    store.episodic.add("c", {"t": "x", "tags": [], "o": {"k": 1.0}, "n": -1.5})
    store.episodic.add("d", {"t": "x", "tags": "draft", "n": "5"})
    return store


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ({"tags": ["draft"]}, ["a"]),
        ({"tags": {"$eq": ["draft", "final"]}}, ["b"]),
        ({"tags": ["final", "draft"]}, []),  # order matters in a list
        ({"tags": []}, ["c"]),
        ({"tags": {"$ne": ["draft"]}}, ["b", "c", "d"]),
        ({"o": {"$eq": {"k": 1}}}, ["b", "c"]),  # 1 == 1.0; and no other key
        ({"o": {"$eq": {"l": [1.0, 2], "k": 1}}}, ["a"]),  # key order does not matter
        ({"o": {"$ne": {"k": 1}}}, ["a", "d"]),
        ({"n": {"$lt": INF}}, ["a", "b", "c"]),  # every number, not the string
        ({"n": {"$gte": -INF}}, ["a", "b", "c"]),
        ({"n": {"$gt": INF}}, []),
        ({"n": {"$lte": -INF}}, []),
        ({"n": {"$eq": float("nan")}}, []),
        ({"n": {"$lt": float("nan")}}, []),
        ({"n": {"$ne": float("nan")}}, ["a", "b", "c", "d"]),
        ({"n": INF}, []),
        ({"n": {"$lt": 10**100}}, ["a", "b", "c"]),
        ({"n": {"$gt": 2**64}}, ["b"]),
        ({"n": 2**70}, ["b"]),
    ],
)
def test_lists_objects_and_the_numbers_json_cannot_hold(
    filled: Store, filter_: dict[str, object], expected: list[str]
) -> None:
    for query in ("x", None):
        assert sorted(hit.item_id for hit in filled.search(query, filter=filter_)) == expected


@pytest.mark.parametrize(
    "filter_",
    [
        {"o": {"k": 1}},  # a plain object is an object of operators
        {"tags": {"$lt": ["a"]}},
        {"o": {"$eq": {'k"': 1}}},
        {"tags": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]},
        {"tags": [object()]},
    ],
)
def test_what_filters_still_refuse(filled: Store, filter_: dict[str, object]) -> None:
    with pytest.raises(InvalidFilterError):
        filled.search(filter=filter_)
    with pytest.raises(ValueError):  # bad arguments, as Python's own
        filled.search(filter=filter_)
