"""The asyncio twin is whole: every public method of a synchronous class has an async twin.

For each pair (store, tiers, ``open``), every public name of the synchronous class must exist on
the asyncio class with the same parameters (names, kinds, defaults), and be a coroutine function
there -- unless it is listed below as deliberately different, with the reason. A new method on a
synchronous class fails this test until its twin is written or its absence explained.
Then the working tier's own methods are run on both and must leave the same rows.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import memrepl
import memrepl.aio
from memrepl.errors import ItemNotFoundError, StoreError
from memrepl.storage import (
    AsyncEpisodicMemory,
    AsyncSemanticMemory,
    AsyncStore,
    AsyncTier,
    AsyncWorkingMemory,
    EpisodicMemory,
    SemanticMemory,
    Store,
    Tier,
    WorkingMemory,
)

from ..files import query

PAIRS: list[tuple[type, type]] = [
    (Store, AsyncStore),
    (Tier, AsyncTier),
    (WorkingMemory, AsyncWorkingMemory),
    (EpisodicMemory, AsyncEpisodicMemory),
    (SemanticMemory, AsyncSemanticMemory),
]

#: Public methods that are NOT coroutines in the asyncio twin, and why.
PLAIN_ON_PURPOSE: dict[str, str] = {
    "tier": "returns the tier object: no I/O",
    "stamping": "a context manager for the clock inside a run_sync function, on the sync side",
    "concept": "the semantic graph is in memory: reading it needs no I/O",
    "neighbors": "the semantic graph is in memory",
    "shortest_path": "the semantic graph is in memory",
    "subgraph": "the semantic graph is in memory",
    "pending_relations": "the semantic graph is in memory",
    "read": "an async context manager (async with store.read()), not a coroutine",
    "write": "an async context manager (async with store.write()), not a coroutine",
}
#: Public names of a synchronous class with no twin at all, and why.
ABSENT_ON_PURPOSE: dict[tuple[str, str], str] = {}


def public(cls: type) -> dict[str, Any]:
    return {
        name: inspect.getattr_static(cls, name) for name in dir(cls) if not name.startswith("_")
    }


def parameters(function: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    signature = inspect.signature(function)
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


@pytest.mark.parametrize(("sync", "twin"), PAIRS, ids=[s.__name__ for s, _ in PAIRS])
def test_every_public_method_has_an_async_twin(sync: type, twin: type) -> None:
    theirs = public(twin)
    problems = []
    for name, member in public(sync).items():
        if (sync.__name__, name) in ABSENT_ON_PURPOSE:
            continue
        if name not in theirs:
            problems.append(f"{twin.__name__}.{name} is missing")
            continue
        other = theirs[name]
        if isinstance(member, property) or not callable(member):
            if type(member) is not type(other):
                problems.append(f"{twin.__name__}.{name} is a {type(other).__name__}")
            continue
        function = getattr(sync, name)
        their_function = getattr(twin, name)
        if parameters(function) != parameters(their_function):
            problems.append(
                f"{twin.__name__}.{name}{inspect.signature(their_function)} differs from "
                f"{sync.__name__}.{name}{inspect.signature(function)}"
            )
        is_coroutine = inspect.iscoroutinefunction(their_function)
        if not is_coroutine and name not in PLAIN_ON_PURPOSE:
            problems.append(f"{twin.__name__}.{name} is not a coroutine function")
    assert problems == []


def test_open_and_aio_open_take_the_same_arguments() -> None:
    assert parameters(memrepl.open) == parameters(memrepl.aio.open)
    assert inspect.iscoroutinefunction(memrepl.aio.open)


def test_the_lists_of_exceptions_name_real_methods() -> None:
    names = {name for sync, _ in PAIRS for name in public(sync)}
    assert set(PLAIN_ON_PURPOSE) <= names
    for (cls_name, name), reason in ABSENT_ON_PURPOSE.items():
        assert reason and any(s.__name__ == cls_name and name in public(s) for s, _ in PAIRS)


def working_rows(path: Path) -> list[tuple[Any, ...]]:
    return query(
        path,
        "SELECT item_id, deleted, content, pinned, expires_at_ns IS NOT NULL "
        "FROM working_items ORDER BY item_id",
    )


def stripped(record: dict[str, Any] | None) -> dict[str, Any]:
    """A record without what differs between two runs: its stamps."""
    assert record is not None
    return {k: v for k, v in record.items() if not k.endswith("_ns") and k != "modified_at"}


class Wall:
    """A wall clock the test moves by hand (TTLs expire when it says so)."""

    def __init__(self) -> None:
        self.now_ns = time.time_ns()

    def __call__(self) -> int:
        return self.now_ns


def sync_script(path: Path) -> list[Any]:
    wall = Wall()
    with memrepl.open(path, node_id="n", working_capacity=3, wall=wall) as store:
        w = store.working
        w.add("pinned", {"v": 1}, pinned=True)
        w.add("ttl", {"v": 2}, ttl_s=3600)
        w.update("ttl", {"v": 22}, pinned=True)
        w.merge("pinned", {"w": 3}, ttl_s=3600)
        w.pin("ttl")
        w.unpin("pinned")
        w.set_ttl("pinned", None)
        w.set_ttl("ttl", 7200)
        w.add("soon", {"v": 3}, ttl_s=10)  # the last write: only expire() forgets it
        wall.now_ns += 20 * 10**9  # past its TTL
        expired = w.expire()
        with pytest.raises(ItemNotFoundError):
            w.pin("missing")
        return [expired, w.get_by_id("soon"), stripped(w.get_by_id("pinned"))]


async def async_script(path: Path) -> list[Any]:
    wall = Wall()
    async with await memrepl.aio.open(path, node_id="n", working_capacity=3, wall=wall) as store:
        w = store.working
        await w.add("pinned", {"v": 1}, pinned=True)
        await w.add("ttl", {"v": 2}, ttl_s=3600)
        await w.update("ttl", {"v": 22}, pinned=True)
        await w.merge("pinned", {"w": 3}, ttl_s=3600)
        await w.pin("ttl")
        await w.unpin("pinned")
        await w.set_ttl("pinned", None)
        await w.set_ttl("ttl", 7200)
        await w.add("soon", {"v": 3}, ttl_s=10)  # the last write: only expire() forgets it
        wall.now_ns += 20 * 10**9  # past its TTL
        expired = await w.expire()
        with pytest.raises(ItemNotFoundError):
            await w.pin("missing")
        return [expired, await w.get_by_id("soon"), stripped(await w.get_by_id("pinned"))]


async def test_working_memory_pins_and_expires_the_same_way(tmp_path: Path) -> None:
    sync_results = sync_script(tmp_path / "sync.db")
    async_results = await async_script(tmp_path / "async.db")
    # "soon" expired: its TTL passed, so expire() forgot it and reads do not see it.
    assert sync_results == async_results
    assert async_results[:2] == [["soon"], None]
    assert async_results[2]["content"] == {"v": 1, "w": 3}
    assert working_rows(tmp_path / "sync.db") == working_rows(tmp_path / "async.db")
    rows = {row[0]: row for row in working_rows(tmp_path / "async.db")}
    assert rows["pinned"][3:] == (0, 0)  # unpinned, no TTL
    assert rows["ttl"][3:] == (1, 1)  # pinned, TTL set


async def test_a_nested_async_write_fails_at_once(tmp_path: Path) -> None:
    store = await memrepl.aio.open(tmp_path / "nested.db", node_id="n")
    try:
        async with store.write():
            with pytest.raises(StoreError, match="already open in this task"):
                async with store.write():
                    pass
        # Writes of two tasks wait for each other instead.
        await asyncio.gather(store.working.add("a", {"v": 1}), store.working.add("b", {"v": 2}))
        assert {r["item_id"] for r in await store.working.get_modified_since(0)} == {"a", "b"}
    finally:
        await store.close()
