"""TTL as LangGraph documents it: ``put(ttl=minutes)``, ``TTLConfig`` (``default_ttl``,
``refresh_on_read``, ``sweep_interval_minutes``), the timer refreshed by reads (``get`` and
``search``) unless told not to, expired items absent at once and swept later -- and, memrepl's own,
a TTL that replicates: a peer forgets the item when the writer does."""

from __future__ import annotations

import time
from collections.abc import Callable

from langgraph.store.base import GetOp

from memrepl.integrations.langgraph import MemreplStore
from memrepl.protocol.enums import MemoryTier
from memrepl.sync.manager import MemorySyncManager

from ..clocks import S, Wall

MINUTE = 60 * S


def test_an_item_expires_its_ttl_after_its_last_read_or_write(
    make_store: Callable[..., MemreplStore], wall: Wall
) -> None:
    store = make_store(wall=wall)
    store.put(("a",), "k", {"v": 1}, ttl=1)
    store.put(("a",), "forever", {"v": 2})
    wall.now += 40 * S
    assert store.get(("a",), "k") is not None  # refreshes: 60 s from now
    wall.now += 40 * S
    assert store.get(("a",), "k", refresh_ttl=False) is not None  # 80 s: still in its minute
    wall.now += 21 * S
    assert store.get(("a",), "k") is None  # 101 s: 61 s after the last refreshing read
    assert store.search(("a",)) and [i.key for i in store.search(("a",))] == ["forever"]
    wall.now += 10**6 * S
    assert store.get(("a",), "forever") is not None
    store.put(("a",), "k", {"v": 3}, ttl=1)  # a put brings it back, with a new minute
    wall.now += 59 * S
    assert store.get(("a",), "k", refresh_ttl=False) is not None
    wall.now += 2 * S
    assert store.get(("a",), "k") is None


def test_a_search_refreshes_the_items_it_returns(
    make_store: Callable[..., MemreplStore], wall: Wall
) -> None:
    store = make_store(wall=wall)
    store.put(("a",), "seen", {"v": 1}, ttl=1)
    store.put(("b",), "unseen", {"v": 1}, ttl=1)
    store.put(("c",), "asked-not-to", {"v": 1}, ttl=1)
    wall.now += 50 * S
    assert [item.key for item in store.search(("a",))] == ["seen"]
    assert [item.key for item in store.search(("c",), refresh_ttl=False)] == ["asked-not-to"]
    wall.now += 20 * S
    assert store.get(("a",), "seen", refresh_ttl=False) is not None
    assert store.get(("b",), "unseen") is None
    assert store.get(("c",), "asked-not-to") is None
    assert store.list_namespaces() == [("a",)]


def test_ttl_config_default_and_refresh_on_read(
    make_store: Callable[..., MemreplStore], wall: Wall
) -> None:
    store = make_store(wall=wall, ttl={"default_ttl": 2, "refresh_on_read": False})
    store.put(("a",), "default", {"v": 1})
    store.put(("a",), "own", {"v": 1}, ttl=10)
    store.put(("a",), "none", {"v": 1}, ttl=None)
    wall.now += 100 * S
    assert store.get(("a",), "default") is not None  # not refreshed: refresh_on_read is off
    assert store.batch([GetOp(("a",), "own", refresh_ttl=True)])[0] is not None  # asked to
    wall.now += 21 * S
    assert store.get(("a",), "default") is None
    assert store.get(("a",), "own") is not None
    assert store.get(("a",), "none") is not None


def test_sweeping_forgets_what_expired(make_store: Callable[..., MemreplStore], wall: Wall) -> None:
    store = make_store(wall=wall)
    store.put(("a",), "k1", {"v": 1}, ttl=1)
    store.put(("a",), "k2", {"v": 1}, ttl=1)
    store.put(("a",), "k3", {"v": 1})
    wall.now += 2 * MINUTE
    assert store.sweep_ttl() == 2
    assert store.sweep_ttl() == 0
    assert [r["key"] for r in store.store.episodic.get_modified_since(0)] == ["k3"]


def test_the_sweeper_runs_by_itself(make_store: Callable[..., MemreplStore], wall: Wall) -> None:
    store = make_store(wall=wall, ttl={"sweep_interval_minutes": 0.001})  # every 60 ms
    store.put(("a",), "k", {"v": 1}, ttl=1)
    wall.now += 2 * MINUTE
    deadline = time.monotonic() + 60
    while store.store.episodic.get_modified_since(0) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.store.episodic.get_modified_since(0) == []
    assert store.stop_ttl_sweeper(timeout=30)


def test_the_ttl_replicates(make_store: Callable[..., MemreplStore], wall: Wall) -> None:
    a, b = make_store("a", wall=wall), make_store("b", wall=wall)
    managers = {}
    for name, store in (("a", a), ("b", b)):
        managers[name] = MemorySyncManager(node_id=name)
        managers[name].register_memory_tier(MemoryTier.EPISODIC, store.store.episodic)
    a.put(("a",), "k", {"v": 1}, ttl=1)
    a.put(("a",), "kept", {"v": 2}, ttl=1)
    managers["b"].apply_sync_batch(managers["a"].create_delta_batch(MemoryTier.EPISODIC, "b"))
    wall.now += 50 * S
    assert b.get(("a",), "kept") is not None  # a read on b refreshes b's copy only
    wall.now += 20 * S
    assert a.get(("a",), "k") is None and b.get(("a",), "k") is None
    assert a.get(("a",), "kept") is None
    assert b.get(("a",), "kept", refresh_ttl=False) is not None
