"""The asyncio twin: the same seed calls through memrepl.aio give the same results, on a store
the synchronous store reads (aiosqlite on a file, psycopg's async connection on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

import memrepl.aio
from memrepl.errors import (
    InvalidContentError,
    ItemExistsError,
    ItemNotFoundError,
    NodeIdMismatchError,
    UnknownTierError,
)
from memrepl.protocol.enums import MemoryTier, SyncPriority
from memrepl.storage import AsyncStore, LocalWrite, StoredItem
from memrepl.storage import open as open_store
from memrepl.storage.items import modified_since

from ..conftest import Location, Locator
from ..files import dump

STAMP_KEYS = ("timestamp_ns", "modified_at", "created_at_ns", "last_accessed_ns")


def comparable(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """A record without its stamps, which differ between two runs."""
    if record is None:
        return None
    return {key: value for key, value in record.items() if key not in STAMP_KEYS}


def scenario_sync(path: Location, tier: MemoryTier) -> list[Any]:
    with open_store(path, node_id="node-a") as store:
        memory = store.tier(tier)
        return [
            memory.add("a", {"v": 1}, priority=SyncPriority.HIGH),
            memory.merge("a", {"w": 2}),
            memory.get_by_id("a"),
            memory.update("a", {"v": 3}),
            memory.merge("b", {"x": 1}),
            memory.delete("b"),
            memory.get_by_id("b"),
            memory.write_many([LocalWrite.add("c", {"n": 1}), LocalWrite.delete("c")]),
            memory.get_modified_since(0),
        ]


async def scenario_async(path: Location, tier: MemoryTier) -> list[Any]:
    async with await memrepl.aio.open(path, node_id="node-a") as store:
        memory = store.tier(tier)
        return [
            await memory.add("a", {"v": 1}, priority=SyncPriority.HIGH),
            await memory.merge("a", {"w": 2}),
            await memory.get_by_id("a"),
            await memory.update("a", {"v": 3}),
            await memory.merge("b", {"x": 1}),
            await memory.delete("b"),
            await memory.get_by_id("b"),
            await memory.write_many([LocalWrite.add("c", {"n": 1}), LocalWrite.delete("c")]),
            await memory.get_modified_since(0),
        ]


def normalise(results: Sequence[Any]) -> list[Any]:
    return [
        [comparable(r) for r in result] if isinstance(result, list) else comparable(result)
        for result in results
    ]


async def test_same_results_as_the_sync_api(locate: Locator, tier: MemoryTier) -> None:
    sync_results = scenario_sync(locate("sync"), tier)
    async_results = await scenario_async(locate("async"), tier)
    assert normalise(async_results) == normalise(sync_results)
    # Same stamps relative to each other: the last change of each is its get_modified_since.
    assert [r["item_id"] for r in async_results[-1]] == ["a", "b", "c"]


async def test_async_file_is_read_by_the_sync_store(locate: Locator, tier: MemoryTier) -> None:
    path = locate("shared")
    async with await memrepl.aio.open(path, node_id="node-a") as store:
        written = await store.tier(tier).add("x", {"from": "async"})
    with open_store(path, node_id="node-a") as store:
        assert store.tier(tier).get_modified_since(0) == [written]
        assert store.tier(tier).add("y", {"from": "sync"})["modified_at"] > written["modified_at"]
    async with await memrepl.aio.open(path, node_id="node-a") as store:
        got = await store.tier(tier).get_by_id("y")
        assert got is not None
        assert got["content"] == {"from": "sync"}


async def test_errors_and_unchanged_file(locate: Locator) -> None:
    path = locate("errors")
    store = await memrepl.aio.open(path, node_id="node-a")
    try:
        await store.working.add("x", {"v": 1})
        before = dump(path)
        with pytest.raises(ItemExistsError):
            await store.working.add("x", {"v": 2})
        with pytest.raises(ItemNotFoundError):
            await store.episodic.delete("missing")
        with pytest.raises(InvalidContentError):
            await store.semantic.merge("x", {"v": float("nan")})
        with pytest.raises(UnknownTierError):
            store.tier(7)
        assert dump(path) == before
    finally:
        await store.close()
    with pytest.raises(NodeIdMismatchError):
        await memrepl.aio.open(path, node_id="node-b")
    assert dump(path) == before


async def test_storage_functions_run_through_run_sync(locate: Locator) -> None:
    seen: list[str] = []
    store: AsyncStore = await memrepl.aio.open(locate("hooks"), node_id="node-a")
    try:

        def hook(changed: Sequence[StoredItem]) -> None:
            seen.extend(item.item_id for item in changed)

        store.semantic._after_commit = hook  # type: ignore[method-assign]
        await store.semantic.write_many([LocalWrite.add("p", {}), LocalWrite.add("q", {})])
        spec = store.semantic.spec
        async with store.read() as conn:
            rows = await conn.run_sync(modified_since, spec, 0)
        assert [row.item_id for row in rows] == ["p", "q"]
        assert seen == ["p", "q"]
    finally:
        await store.close()


async def test_async_tiers_have_the_seed_classes() -> None:
    assert issubclass(memrepl.aio.AsyncWorkingMemory, memrepl.aio.AsyncTier)
    store = await memrepl.aio.open(":memory:", node_id="node-m")
    try:
        assert isinstance(store.working, memrepl.aio.AsyncWorkingMemory)
        assert store.tier(MemoryTier.EPISODIC) is store.episodic
        assert store.path is None
        await store.working.add("k", {"v": 1})
        assert (await store.working.get_by_id("k")) is not None
    finally:
        await store.close()


async def test_async_semantic_tier_keeps_the_same_graph(locate: Locator) -> None:
    """The asyncio semantic tier loads the graph on open and follows its own writes: the same
    graph the synchronous store builds from the same store."""
    path = locate("g")
    with open_store(path, node_id="node-a") as store:
        alice = store.semantic.add_concept("alice", "person")["item_id"]
        bob = store.semantic.add_concept("bob", "person")["item_id"]
        store.semantic.add_relation(alice, "knows", bob, since=2020)
    store_a = await memrepl.aio.open(path, node_id="node-a")
    try:
        semantic = store_a.semantic
        assert semantic.neighbors(alice) == [bob]
        carol = (await semantic.add_concept("carol", "person"))["item_id"]
        await semantic.add_relation(bob, "knows", carol)
        await semantic.add_relation(carol, "knows", "missing")
        assert semantic.shortest_path(alice, carol) == [alice, bob, carol]
        assert semantic.pending_relations() == [
            (await semantic.get_modified_since(0))[-1]["item_id"]
        ]
        await semantic.delete(bob)
        assert semantic.shortest_path(alice, carol) is None
        async_nodes = dict(semantic.graph.nodes(data=True))
        async_edges = sorted(semantic.graph.edges(keys=True))
    finally:
        await store_a.close()
    with open_store(path, node_id="node-a") as store:
        assert dict(store.semantic.graph.nodes(data=True)) == async_nodes
        assert sorted(store.semantic.graph.edges(keys=True)) == async_edges
