"""What ``MemreplStore`` adds to LangGraph's store: items replicate (a key written on two nodes is
one item), a concurrent write is one entry in the conflict log, and ``sync_status`` says where
replication stands."""

from __future__ import annotations

import time
from collections.abc import Callable

from memrepl.integrations.langgraph import MemreplStore
from memrepl.protocol.enums import MemoryTier
from memrepl.sync.manager import MemorySyncManager

EPISODIC = MemoryTier.EPISODIC


def pair(
    make_store: Callable[..., MemreplStore],
) -> tuple[MemreplStore, MemreplStore, dict[str, MemorySyncManager]]:
    """Two stores, ``a`` and ``b``, and a sync manager for each."""
    stores = {name: make_store(name) for name in ("a", "b")}
    managers = {}
    for name, store in stores.items():
        managers[name] = MemorySyncManager(node_id=name)
        managers[name].register_memory_tier(EPISODIC, store.store.episodic)
    return stores["a"], stores["b"], managers


def sync(managers: dict[str, MemorySyncManager], source: str, target: str) -> None:
    """One delta batch from ``source`` to ``target``, acknowledged."""
    batch = managers[source].create_delta_batch(EPISODIC, target)
    managers[target].apply_sync_batch(batch)
    managers[source].update_sync_vector(EPISODIC, target, batch.cursor or 0)


def test_a_concurrent_write_is_one_conflict_on_each_node(
    make_store: Callable[..., MemreplStore],
) -> None:
    a, b, managers = pair(make_store)
    a.put(("users", "alice"), "diet", {"diet": "vegan"})
    a.put(("users", "alice"), "city", {"city": "lisbon"})
    time.sleep(0.002)
    b.put(("users", "alice"), "diet", {"diet": "vegetarian"})  # later, not having seen a's
    ab = managers["a"].create_delta_batch(EPISODIC, "b")
    ba = managers["b"].create_delta_batch(EPISODIC, "a")
    managers["b"].apply_sync_batch(ab)
    managers["a"].apply_sync_batch(ba)
    # Delivered again: logged once all the same.
    managers["b"].apply_sync_batch(ab)
    for store in (a, b):
        assert store.get(("users", "alice"), "diet").value == {"diet": "vegetarian"}  # type: ignore[union-attr]
        [entry] = store.conflicts(("users", "alice"), "diet")
        assert (entry.namespace, entry.key, entry.rule) == (("users", "alice"), "diet", "lww")
        assert (entry.winner.node_id, entry.winner.value) == ("b", {"diet": "vegetarian"})
        assert (entry.loser.node_id, entry.loser.value) == ("a", {"diet": "vegan"})
        assert entry.kept == {"diet": "vegetarian"}
        assert entry.winner.updated_at > entry.loser.updated_at
        assert [e.key for e in store.conflicts(("users",))] == ["diet"]
        assert store.conflicts(("users", "alice"), "city") == []
        assert store.conflicts(("users", "bob")) == []
    assert a.conflicts()[0].peer_id == "b" and b.conflicts()[0].peer_id == "a"


def test_sync_status_says_what_each_peer_lacks(make_store: Callable[..., MemreplStore]) -> None:
    a, b, managers = pair(make_store)
    a.put(("n",), "k1", {"v": 1})
    sync(managers, "a", "b")
    a.put(("n",), "k2", {"v": 2})
    a.put(("n",), "k3", {"v": 3})
    a.delete(("n",), "k1")
    status = a.sync_status()
    assert (status.node_id, status.tier, status.items, status.tombstones) == ("a", EPISODIC, 2, 1)
    [peer] = status.peers
    assert (peer.peer_id, peer.items_behind) == ("b", 3)
    assert not status.in_sync
    sync(managers, "a", "b")
    status = a.sync_status()
    assert status.in_sync and status.peers[0].items_behind == 0
    assert b.get(("n",), "k1") is None and b.get(("n",), "k3") is not None
    [inbound] = b.sync_status().peers
    assert inbound.peer_id == "a" and inbound.inbound_cursor == status.latest_change_ns
