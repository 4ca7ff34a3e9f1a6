"""Decisions about writing and opening: a write without ``priority=`` keeps the item's priority; a
working-tier write is never evicted by its own call (one that cannot fit is refused whole); an
existing store opens without its node id."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import memrepl.aio
import memrepl.storage
from memrepl.errors import CapacityExceededError, StoreError
from memrepl.protocol.enums import MemoryTier, SyncPriority
from memrepl.storage import LocalWrite, Store
from memrepl.sync.manager import MemorySyncManager

from ..conftest import Locator
from ..files import dump
from .conftest import REPO, subprocess_env


def test_a_write_without_a_priority_keeps_the_items(store: Store, tier: MemoryTier) -> None:
    memory = store.tier(tier)
    memory.add("x", {"a": 1}, priority=SyncPriority.HIGH)
    assert memory.merge("x", {"b": 2})["priority"] is SyncPriority.HIGH
    assert memory.update("x", {"c": 3})["priority"] is SyncPriority.HIGH
    assert memory.delete("x")["priority"] is SyncPriority.HIGH
    # A given priority is the item's from then on; a new item starts at NORMAL.
    assert memory.add("x", {"d": 4})["priority"] is SyncPriority.NORMAL
    assert memory.merge("x", {"e": 5}, priority=SyncPriority.LOW)["priority"] is SyncPriority.LOW
    assert memory.merge("x", {"f": 6})["priority"] is SyncPriority.LOW
    assert memory.merge("fresh", {"g": 7})["priority"] is SyncPriority.NORMAL
    item = memory.get_by_id("x")
    assert item is not None and item["priority"] is SyncPriority.LOW


def test_a_concept_merged_again_keeps_its_priority(store: Store) -> None:
    first = store.semantic.add_concept("paris", "city", priority=SyncPriority.URGENT)
    again = store.semantic.add_concept("paris", "city", population=2_100_000)
    assert (first["item_id"], again["priority"]) == (again["item_id"], SyncPriority.URGENT)


async def test_the_asyncio_twin_keeps_it_too(db_path: Path) -> None:
    store = await memrepl.aio.open(db_path, node_id="node-a")
    try:
        await store.working.add("x", {"a": 1}, priority=SyncPriority.URGENT)
        assert (await store.working.merge("x", {"b": 2}))["priority"] is SyncPriority.URGENT
    finally:
        await store.close()


def live(store: Store) -> set[str]:
    return {r["item_id"] for r in store.working.get_modified_since(0) if not r["deleted"]}


def test_one_call_of_more_items_than_the_capacity_is_refused_whole(
    opener: Callable[..., Store], db_path: Path
) -> None:
    store = opener(working_capacity=100)
    store.working.add("old", {"n": 0})
    before = dump(db_path)
    writes = [LocalWrite.add(f"i{n}", {"n": n}) for n in range(101)]
    with pytest.raises(CapacityExceededError) as refused:
        store.working.write_many(writes)
    assert (refused.value.limit, refused.value.size) == (100, 101)
    assert "nothing was written" in str(refused.value)
    assert dump(db_path) == before
    # Exactly the capacity fits: every record returned is an item the tier holds.
    records = store.working.write_many(writes[:100])
    assert live(store) == {r["item_id"] for r in records}


def test_a_write_is_never_evicted_by_its_own_call(opener: Callable[..., Store]) -> None:
    store = opener(working_capacity=3)
    for name in ("a", "b", "c"):
        store.working.add(name, {"n": 1}, priority=SyncPriority.URGENT)
        for _ in range(10):
            store.working.get_by_id(name)
    # The newcomer scores lower than every item there; an older item makes room for it.
    store.working.add("newcomer", {"n": 2}, priority=SyncPriority.BACKGROUND)
    assert "newcomer" in live(store)
    assert len(live(store)) == 3


def test_a_peer_batch_larger_than_the_capacity_is_applied(
    opener: Callable[..., Store], locate: Locator
) -> None:
    sender = opener("node-a", path=None, working_capacity=None)
    receiver = opener("node-b", path=locate("receiver"), working_capacity=5)
    sender.working.write_many([LocalWrite.add(f"i{n}", {"n": n}) for n in range(50)])
    managers = {}
    for store in (sender, receiver):
        managers[store.node_id] = MemorySyncManager(node_id=store.node_id)
        managers[store.node_id].register_memory_tier(MemoryTier.WORKING, store.working)
    batch = managers["node-a"].create_delta_batch(MemoryTier.WORKING, "node-b")
    applied, _ = managers["node-b"].apply_sync_batch(batch)
    assert applied == 50
    assert len(live(receiver)) == 5


def test_an_existing_store_opens_without_its_node_id(db_path: Path) -> None:
    with memrepl.storage.open(db_path, node_id="node-a") as store:
        store.working.add("x", {"a": 1})
    with memrepl.storage.open(db_path) as store:
        assert store.node_id == "node-a"
        assert store.working.get_by_id("x") is not None


async def test_the_asyncio_twin_opens_without_it_too(db_path: Path) -> None:
    memrepl.storage.open(db_path, node_id="node-a").close()
    store = await memrepl.aio.open(db_path)
    try:
        assert store.node_id == "node-a"
    finally:
        await store.close()


def test_without_a_node_id_nothing_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    with pytest.raises(StoreError, match="there is no store there; pass node_id"):
        memrepl.storage.open(missing)
    assert not missing.exists()
    with pytest.raises(StoreError, match="no store there"):
        memrepl.storage.open(":memory:")


def test_a_store_made_by_alembic_alone_needs_its_node_id_once(tmp_path: Path) -> None:
    path = tmp_path / "alembic.db"
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"db={path}", "upgrade", "head"],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    before = dump(path)
    with pytest.raises(StoreError, match="has no node id yet; pass node_id"):
        memrepl.storage.open(path)
    assert dump(path) == before
    memrepl.storage.open(path, node_id="node-a").close()
    with memrepl.storage.open(path) as store:
        assert store.node_id == "node-a"
