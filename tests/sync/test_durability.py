"""Durability of replication state: sync vectors, inbound cursors and the conflict log survive
closing and reopening the stores, and a receiver that lost its database gets everything again.

ARCHITECTURE.md, "Deltas, cursors and sync vectors": both positions live in SQL tables and are
written in the same transactions as what they describe, so a restarted node carries on where it
stopped -- a sync after reopening sends nothing new. The sender resumes from the cursor the
receiver reports, not from its own record, so a receiver with a new empty file is sent it all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from memrepl.protocol.enums import MemoryTier
from memrepl.storage.items import LocalWrite
from memrepl.storage.store import Store
from memrepl.sync.results import SyncStatus

from ..files import location_of, query, wipe
from ..replicas import replicated
from .conftest import Cluster

TIERS = [MemoryTier.WORKING, MemoryTier.EPISODIC, MemoryTier.SEMANTIC]
#: The replication state (``updated_at_ns`` left out: a no-op sync may refresh it).
STATE_QUERIES = {
    "sync_vectors": "SELECT tier, peer_id, acked_cursor FROM sync_vectors ORDER BY 1, 2",
    "inbound_cursors": "SELECT tier, peer_id, applied_cursor FROM inbound_cursors ORDER BY 1, 2",
    "conflicts": "SELECT * FROM conflicts ORDER BY id",
    "tombstone_horizons": "SELECT tier, purged_through FROM tombstone_horizons ORDER BY 1",
}


def write_both(cluster: Cluster) -> None:
    """Items on a and b, some deleted, and ids written on both before either heard of the
    other (each direction's first delivery logs those as conflicts)."""
    for tier in TIERS:
        a, b = cluster.stores["a"].tier(tier), cluster.stores["b"].tier(tier)
        a.write_many([LocalWrite.add(f"a{n}", {"n": n, "by": "a"}) for n in range(30)])
        a.write_many([LocalWrite.delete(f"a{n}") for n in range(0, 30, 7)])
        b.write_many([LocalWrite.add(f"b{n}", {"n": n, "by": "b"}) for n in range(12)])
        b.write_many([LocalWrite.merge(f"b{n}", {"extra": n}) for n in range(0, 12, 3)])
        for n in range(4):
            a.add(f"both{n}", {"n": n, "by": "a"})
            b.add(f"both{n}", {"n": n, "by": "b"})


async def converge(cluster: Cluster) -> None:
    """Sync a and b both ways until a full round sends nothing."""
    a, b = cluster.managers["a"], cluster.managers["b"]
    for _ in range(6):
        results = []
        for tier in TIERS:
            results.append(await a.sync_with_peer("b", tier))
            results.append(await b.sync_with_peer("a", tier))
        assert all(result.ok for result in results), results
        if all(result.status == SyncStatus.UP_TO_DATE for result in results):
            break
    else:
        raise AssertionError("a and b did not settle")
    for tier in TIERS:
        assert replicated(cluster.stores["a"], tier) == replicated(cluster.stores["b"], tier)


def durable_state(cluster: Cluster) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for node, manager in cluster.managers.items():
        path = location_of(cluster.stores[node])
        assert path is not None
        for tier in TIERS:
            state[f"{node} vector {tier.name}"] = manager.get_sync_vector(tier)
            state[f"{node} items {tier.name}"] = replicated(cluster.stores[node], tier)
        for name, sql in STATE_QUERIES.items():
            state[f"{node} {name}"] = query(path, sql)
    return state


async def test_vectors_cursors_and_conflicts_survive_reopening(cluster: Cluster) -> None:
    cluster.add("a")
    cluster.add("b")
    write_both(cluster)
    await converge(cluster)
    before = durable_state(cluster)
    # Something worth keeping: positions for every tier both ways, and logged conflicts.
    for tier in TIERS:
        assert set(before[f"a vector {tier.name}"]) == {"b"}
        assert set(before[f"b vector {tier.name}"]) == {"a"}
    assert len(before["a inbound_cursors"]) == len(before["b inbound_cursors"]) == len(TIERS)
    assert len(before["b conflicts"]) == 4 * len(TIERS)

    cluster.reopen("a")
    cluster.reopen("b")
    assert durable_state(cluster) == before

    # A sync after the restart sends nothing new, in either direction.
    for tier in TIERS:
        for source, target in (("a", "b"), ("b", "a")):
            result = await cluster.managers[source].sync_with_peer(target, tier)
            assert result.status == SyncStatus.UP_TO_DATE, result
            assert (result.batches, result.items) == (0, 0)
    assert durable_state(cluster) == before


async def test_get_sync_vector_after_restart_equals_before(cluster: Cluster) -> None:
    a = cluster.add("a")
    cluster.add("b")
    a.update_sync_vector(MemoryTier.WORKING, node_id="c", timestamp=1234567890)
    cluster.stores["a"].working.add("x", {"v": 1})
    result = await a.sync_with_peer("b", MemoryTier.WORKING)
    assert result.status == SyncStatus.SYNCED
    vector = a.get_sync_vector(MemoryTier.WORKING)
    assert vector == {"b": result.cursor, "c": 1234567890}

    a = cluster.reopen("a")
    assert a.get_sync_vector(MemoryTier.WORKING) == vector
    assert a.get_sync_vector(MemoryTier.EPISODIC) == {}


def lose_database(cluster: Cluster, node_id: str) -> None:
    """``node_id`` loses its file: it comes back with a new, empty database, same node id."""
    lost = cluster.stores.pop(node_id)
    lost.close()
    wipe(cluster.location(node_id))
    cluster.add(node_id)
    assert all(not replicated(cluster.stores[node_id], tier) for tier in TIERS)


async def resync_lost_receiver(cluster: Cluster, cursors: dict[MemoryTier, int]) -> None:
    for tier in TIERS:
        held = replicated(cluster.stores["a"], tier)
        result = await cluster.managers["a"].sync_with_peer("b", tier)
        assert result.status == SyncStatus.SYNCED, result
        # It resumed from what b reported (nothing), not from a's own record of b.
        assert result.items == len(held)
        assert result.cursor >= cursors[tier]
        assert replicated(cluster.stores["b"], tier) == held


async def test_receiver_that_lost_its_database_gets_the_senders_items_again(
    cluster: Cluster,
) -> None:
    a = cluster.add("a")
    cluster.add("b")
    for tier in TIERS:
        memory = cluster.stores["a"].tier(tier)
        memory.write_many([LocalWrite.add(f"a{n}", {"n": n}) for n in range(30)])
        memory.write_many([LocalWrite.delete(f"a{n}") for n in range(0, 30, 7)])
        memory.merge("a1", {"extra": True})
        assert (await a.sync_with_peer("b", tier)).items == 30
    cursors = {tier: a.get_sync_vector(tier)["b"] for tier in TIERS}

    lose_database(cluster, "b")
    await resync_lost_receiver(cluster, cursors)


async def test_receiver_that_lost_its_database_gets_everything_again(cluster: Cluster) -> None:
    a = cluster.add("a")
    cluster.add("b")
    write_both(cluster)
    await converge(cluster)
    cursors = {tier: a.get_sync_vector(tier)["b"] for tier in TIERS}

    lose_database(cluster, "b")
    await resync_lost_receiver(cluster, cursors)


def answer_21_batches_then(cluster: Cluster, receiver: str, after: Callable[[], None]) -> None:
    """Make ``receiver`` answer a round's probe and 21 batches, then only call ``after()``."""
    from memrepl.protocol.enums import MessageTypes

    endpoint = cluster.managers[receiver].mesh
    assert endpoint is not None
    answer = endpoint.handler_for(MessageTypes.VECTOR_SYNC)  # type: ignore[attr-defined]
    seen = 0

    def answer_21_batches(data: bytes, peer_id: str) -> object:
        nonlocal seen
        seen += 1
        if seen <= 22:
            return answer(data, peer_id)
        after()
        return None

    endpoint.register_handler(MessageTypes.VECTOR_SYNC, answer_21_batches)


def write_items(store: Store, prefix: str, count: int = 2_300) -> None:
    store.working.write_many([LocalWrite.add(f"{prefix}{n:05d}", {"n": n}) for n in range(count)])


def applied_cursor_on(cluster: Cluster, receiver: str, sender: str) -> int:
    ((applied,),) = query(
        cluster.location(receiver),
        f"SELECT applied_cursor FROM inbound_cursors WHERE tier = 1 AND peer_id = '{sender}'",
    )
    return int(applied)


async def test_a_round_cut_short_records_every_acknowledged_batch(cluster: Cluster) -> None:
    """A round saves its acknowledged cursor every few batches; when the peer stops answering
    mid-round, the sync vector still ends at exactly what the peer acknowledged -- its own
    durable inbound cursor -- neither less nor more."""
    a = cluster.add("a", ack_timeout_s=0.3)
    cluster.add("b")
    write_items(cluster.stores["a"], "i")
    answer_21_batches_then(cluster, "b", lambda: None)  # then silence
    result = await a.sync_with_peer("b", MemoryTier.WORKING)
    assert result.status == SyncStatus.TIMEOUT
    assert result.batches == 21
    acked = a.get_sync_vector(MemoryTier.WORKING)["b"]
    assert acked == applied_cursor_on(cluster, "b", "a") == result.cursor
    # 21 batches of 100: not a multiple of the save interval, so the last save came at the end.
    assert query(cluster.location("b"), "SELECT count(*) FROM working_items")[0] == (2_100,)


async def test_a_cancelled_round_records_what_was_acknowledged(cluster: Cluster) -> None:
    """Cancelled mid-round (a node stopping, a peer dropping): the acknowledged batches are
    recorded; and if the store is already closed, the cancellation still comes through."""
    a = cluster.add("a")
    cluster.add("b")
    write_items(cluster.stores["a"], "i")
    rounds: list[asyncio.Task[object]] = []

    def cancel_the_round() -> None:
        rounds[-1].cancel()

    answer_21_batches_then(cluster, "b", cancel_the_round)
    rounds.append(asyncio.ensure_future(a.sync_with_peer("b", MemoryTier.WORKING)))
    with pytest.raises(asyncio.CancelledError):
        await rounds[-1]
    assert a.get_sync_vector(MemoryTier.WORKING)["b"] == applied_cursor_on(cluster, "b", "a")

    def close_then_cancel() -> None:
        cluster.stores["a"].close()
        rounds[-1].cancel()

    write_items(cluster.stores["a"], "j")
    answer_21_batches_then(cluster, "b", close_then_cancel)
    rounds.append(asyncio.ensure_future(a.sync_with_peer("b", MemoryTier.WORKING)))
    with pytest.raises(asyncio.CancelledError):
        await rounds[-1]
