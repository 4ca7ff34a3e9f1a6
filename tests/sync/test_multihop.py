"""Multi-hop replication, no echo, tombstones over hops, REPLICATE, and tombstone collection.

ARCHITECTURE.md, "Deltas, cursors and sync vectors": items applied from a peer get a fresh
``modified_at`` so they flow on to other peers, but are not echoed back to the peer they came
from (the batch's cursor still covers them). Tombstones are purged only once every known peer
acknowledged them; a peer whose cursor is below the purge horizon gets a snapshot.
"""

from __future__ import annotations

import asyncio
from typing import Any

from memrepl.protocol.enums import MemoryTier
from memrepl.storage.items import LocalWrite
from memrepl.storage.store import Store
from memrepl.sync.results import SyncStatus

from ..files import location_of, query
from ..replicas import replicated
from .conftest import Cluster


def live(store: Store, tier: MemoryTier) -> list[tuple[Any, ...]]:
    """The live items only: after a purge, nodes differ in the tombstones they still keep."""
    return [item for item in replicated(store, tier) if not item[3]]


def rows(store: Store, tier: MemoryTier) -> list[tuple[Any, ...]]:
    """Every column of every row of the tier, ``modified_at`` included (did anything change?)."""
    name = store.tier(tier).spec.table.name
    return query(location_of(store), f"SELECT * FROM {name} ORDER BY item_id")


def tombstones(store: Store, tier: MemoryTier) -> list[str]:
    name = store.tier(tier).spec.table.name
    found = query(location_of(store), f"SELECT item_id FROM {name} WHERE deleted ORDER BY item_id")
    return [row[0] for row in found]


def max_modified_at(store: Store, tier: MemoryTier) -> int:
    return max(r["modified_at"] for r in store.tier(tier).get_modified_since(0))


def write_some(store: Store, tier: MemoryTier, prefix: str, count: int) -> None:
    memory = store.tier(tier)
    memory.write_many(
        [LocalWrite.add(f"{prefix}{n}", {"n": n, "by": prefix}) for n in range(count)]
    )
    memory.merge(f"{prefix}0", {"merged": True})


async def test_a_to_b_to_c_keeps_a_as_origin(cluster: Cluster, tier: MemoryTier) -> None:
    a, b = cluster.add("a"), cluster.add("b")
    cluster.add("c")
    write_some(cluster.stores["a"], tier, "a", 20)
    assert (await a.sync_with_peer("b", tier)).items == 20
    result = await b.sync_with_peer("c", tier)
    assert (result.status, result.items, result.applied) == (SyncStatus.SYNCED, 20, 20)

    at_c = cluster.stores["c"].tier(tier).get_modified_since(0)
    assert len(at_c) == 20
    assert {record["origin_node"] for record in at_c} == {"a"}
    assert replicated(cluster.stores["c"], tier) == replicated(cluster.stores["a"], tier)
    merged = cluster.stores["c"].tier(tier).get_by_id("a0")
    assert merged is not None
    assert merged["content"] == {"n": 0, "by": "a", "merged": True}


async def test_nothing_echoes_back(cluster: Cluster, tier: MemoryTier) -> None:
    a, b, c = cluster.add("a"), cluster.add("b"), cluster.add("c")
    write_some(cluster.stores["a"], tier, "a", 20)
    await a.sync_with_peer("b", tier)
    write_some(cluster.stores["b"], tier, "b", 3)

    # b's delta for a holds only b's own writes, yet its cursor covers what came from a.
    batch = b.create_delta_batch(tier, "a")
    assert sorted(item.item_id for item in batch.items) == ["b0", "b1", "b2"]
    assert batch.cursor == max_modified_at(cluster.stores["b"], tier)
    batch_for_c = b.create_delta_batch(tier, "c")
    assert len(batch_for_c.items) == 23

    a_before = rows(cluster.stores["a"], tier)
    result = await b.sync_with_peer("a", tier)
    assert (result.items, result.applied, result.conflicts) == (3, 3, 0)
    assert result.cursor == max_modified_at(cluster.stores["b"], tier)
    # a's own rows were not touched: nothing of a's came back to it.
    changed = {row[0] for row in rows(cluster.stores["a"], tier)} - {row[0] for row in a_before}
    assert changed == {"b0", "b1", "b2"}
    assert [r for r in rows(cluster.stores["a"], tier) if not r[0].startswith("b")] == a_before

    # b -> c, then c has nothing to send back to b; what it sends on to a changes nothing there.
    await b.sync_with_peer("c", tier)
    assert not c.create_delta_batch(tier, "b").items
    b_before, a_before = rows(cluster.stores["b"], tier), rows(cluster.stores["a"], tier)
    back = await c.sync_with_peer("b", tier)
    assert back.ok and (back.items, back.applied) == (0, 0)
    onward = await c.sync_with_peer("a", tier)
    assert onward.ok and (onward.applied, onward.conflicts) == (0, 0)
    assert rows(cluster.stores["b"], tier) == b_before
    assert rows(cluster.stores["a"], tier) == a_before
    for store in cluster.stores.values():
        assert replicated(store, tier) == replicated(cluster.stores["a"], tier)


async def test_tombstones_cross_two_hops(cluster: Cluster, tier: MemoryTier) -> None:
    a, b = cluster.add("a"), cluster.add("b")
    cluster.add("c")
    write_some(cluster.stores["a"], tier, "a", 10)
    await a.sync_with_peer("b", tier)
    await b.sync_with_peer("c", tier)
    cluster.stores["a"].tier(tier).write_many([LocalWrite.delete(f"a{n}") for n in (0, 3, 4)])
    await a.sync_with_peer("b", tier)
    result = await b.sync_with_peer("c", tier)
    assert (result.items, result.applied) == (3, 3)

    c_store = cluster.stores["c"]
    assert tombstones(c_store, tier) == ["a0", "a3", "a4"]
    for item_id in ("a0", "a3", "a4"):
        assert c_store.tier(tier).get_by_id(item_id) is None
    gone = [r for r in c_store.tier(tier).get_modified_since(0) if r["deleted"]]
    assert {r["origin_node"] for r in gone} == {"a"}
    assert replicated(c_store, tier) == replicated(cluster.stores["a"], tier)


async def replicate_setup(cluster: Cluster, tier: MemoryTier) -> None:
    cluster.add("a")
    b = cluster.add("b")
    write_some(cluster.stores["a"], tier, "a", 250)
    cluster.stores["a"].tier(tier).write_many(
        [LocalWrite.delete(f"a{n}") for n in range(0, 250, 9)]
    )
    # a also holds items that came from b (a snapshot includes them: no echo filter).
    write_some(cluster.stores["b"], tier, "b", 5)
    await b.sync_with_peer("a", tier)
    cluster.add("c")


async def after_replicate(cluster: Cluster, tier: MemoryTier) -> None:
    """c equals a, and carries on with ordinary deltas."""
    a, c = cluster.managers["a"], cluster.managers["c"]
    assert replicated(cluster.stores["c"], tier) == replicated(cluster.stores["a"], tier)
    assert len(replicated(cluster.stores["c"], tier)) == 255
    cluster.stores["a"].tier(tier).add("later", {"after": "snapshot"})
    result = await a.sync_with_peer("c", tier)
    assert (result.snapshot, result.items) == (False, 1)
    assert replicated(cluster.stores["c"], tier) == replicated(cluster.stores["a"], tier)
    assert not c.create_delta_batch(tier, "a").items


async def test_replicate_bootstraps_an_empty_node(cluster: Cluster) -> None:
    tier = MemoryTier.EPISODIC
    await replicate_setup(cluster, tier)
    result = await cluster.managers["c"].request_replicate("a", tier)
    assert result.ok, result
    # The snapshot follows the ACK as ordinary batches: wait until it has arrived, then until
    # a's background round has ended (a round for the same peer and tier waits for it).
    for _ in range(1000):
        await asyncio.sleep(0.005)
        if replicated(cluster.stores["c"], tier) == replicated(cluster.stores["a"], tier):
            break
    settled = await cluster.managers["a"].sync_with_peer("c", tier)
    assert settled.ok and settled.items == 0, settled
    await after_replicate(cluster, tier)


async def test_replicate_then_settle_bootstraps_an_empty_node(cluster: Cluster) -> None:
    tier = MemoryTier.EPISODIC
    await replicate_setup(cluster, tier)
    result = await cluster.managers["c"].request_replicate("a", tier)
    assert result.ok, result
    await cluster.hub.settle()
    await after_replicate(cluster, tier)


async def test_tombstones_are_purged_only_when_every_peer_acknowledged(
    cluster: Cluster,
) -> None:
    tier = MemoryTier.WORKING
    a = cluster.add("a", tombstone_grace_s=0)
    cluster.add("b")
    cluster.add("c")
    store = cluster.stores["a"]
    write_some(store, tier, "a", 10)
    for peer in ("b", "c"):
        await a.sync_with_peer(peer, tier)
    store.working.write_many([LocalWrite.delete(f"a{n}") for n in (1, 2, 5, 8)])

    # b has the deletes, c does not yet: c's sync vector is behind, the tombstones stay.
    await a.sync_with_peer("b", tier)
    assert a.get_sync_vector(tier)["c"] < a.get_sync_vector(tier)["b"]
    assert a.purge_tombstones(tier) == 0
    assert tombstones(store, tier) == ["a1", "a2", "a5", "a8"]

    await a.sync_with_peer("c", tier)
    store.working.delete("a9")  # after every acknowledgement: must stay
    assert a.purge_tombstones(tier) == 4
    assert tombstones(store, tier) == ["a9"]
    assert a.purge_tombstones() == 0
    for peer in ("b", "c"):
        assert tombstones(cluster.stores[peer], tier) == ["a1", "a2", "a5", "a8"]

    await a.sync_with_peer("b", tier)
    await a.sync_with_peer("c", tier)
    assert a.purge_tombstones(tier) == 1
    assert tombstones(store, tier) == []


async def purged_cluster(cluster: Cluster, tier: MemoryTier) -> None:
    """a (grace 0) with b in sync; some of a's items deleted and the tombstones purged. a's ACK
    timeout is an hour: a round that waited it out (instead of going on when the peer's
    snapshot request arrives) would fail :func:`promptly`."""
    a = cluster.add("a", tombstone_grace_s=0, ack_timeout_s=3600)
    cluster.add("b")
    write_some(cluster.stores["a"], tier, "a", 30)
    await a.sync_with_peer("b", tier)
    cluster.stores["a"].tier(tier).write_many([LocalWrite.delete(f"a{n}") for n in range(0, 30, 4)])
    await a.sync_with_peer("b", tier)
    assert a.purge_tombstones(tier) == 8
    assert tombstones(cluster.stores["a"], tier) == []


async def promptly(round: Any) -> Any:
    """The round's result, failing the test if it takes anything like an ACK timeout."""
    return await asyncio.wait_for(round, timeout=60)


async def test_new_peer_below_the_purge_horizon_gets_a_snapshot(cluster: Cluster) -> None:
    tier = MemoryTier.EPISODIC
    await purged_cluster(cluster, tier)
    a = cluster.managers["a"]
    cluster.add("d")
    result = await promptly(a.sync_with_peer("d", tier))
    assert result.ok, result
    assert result.snapshot is True
    assert (result.items, result.applied) == (22, 22)
    assert replicated(cluster.stores["d"], tier) == replicated(cluster.stores["a"], tier)
    # Once a has changed again, d gets ordinary deltas.
    cluster.stores["a"].episodic.add("later", {"v": 1})
    await a.sync_with_peer("d", tier)
    cluster.stores["a"].episodic.add("later still", {"v": 2})
    again = await a.sync_with_peer("d", tier)
    assert (again.snapshot, again.items) == (False, 1)
    assert replicated(cluster.stores["d"], tier) == replicated(cluster.stores["a"], tier)


async def test_snapshot_brings_the_peer_above_the_purge_horizon(cluster: Cluster) -> None:
    tier = MemoryTier.EPISODIC
    await purged_cluster(cluster, tier)
    a = cluster.managers["a"]
    cluster.add("d")
    assert (await promptly(a.sync_with_peer("d", tier))).snapshot is True
    again = await a.sync_with_peer("d", tier)
    assert (again.status, again.snapshot, again.items) == (SyncStatus.UP_TO_DATE, False, 0)
    cluster.stores["a"].episodic.add("later", {"v": 1})
    delta = await a.sync_with_peer("d", tier)
    assert (delta.snapshot, delta.items) == (False, 1)


async def test_returning_peer_below_the_purge_horizon_gets_a_snapshot(cluster: Cluster) -> None:
    """c left before some deletes; a forgot it, purged them; c comes back: a snapshot, and c
    ends equal to a (it drops the items whose deletes it can no longer receive). Both nodes have
    the same tombstone grace, as a cluster's nodes should (memrepl.sync.snapshots)."""
    tier = MemoryTier.SEMANTIC
    a = cluster.add("a", tombstone_grace_s=0)
    cluster.add("c", tombstone_grace_s=0)
    write_some(cluster.stores["a"], tier, "a", 30)
    await a.sync_with_peer("c", tier)
    a.forget_peer(tier, "c")
    cluster.stores["a"].semantic.write_many([LocalWrite.delete(f"a{n}") for n in range(0, 30, 4)])
    cluster.stores["a"].semantic.add("new", {"v": 1})
    assert a.purge_tombstones(tier) == 8

    result = await promptly(a.sync_with_peer("c", tier))
    assert result.ok, result
    assert result.snapshot is True
    assert replicated(cluster.stores["c"], tier) == replicated(cluster.stores["a"], tier)


async def test_lowered_sync_vector_after_a_purge_still_ends_equal(cluster: Cluster) -> None:
    tier = MemoryTier.WORKING
    await purged_cluster(cluster, tier)
    a = cluster.managers["a"]
    a.update_sync_vector(tier, node_id="b", timestamp=0)
    result = await a.sync_with_peer("b", tier)
    assert result.ok, result
    assert live(cluster.stores["b"], tier) == live(cluster.stores["a"], tier)
    assert a.get_sync_vector(tier)["b"] == result.cursor > 0
