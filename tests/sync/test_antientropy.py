"""Anti-entropy over the real sync path: divergence behind the cursors is found and repaired.

Two stores on real databases, managers on a LocalMesh; the divergence is made the way an operator
would make it (plain SQL on the store, an older backup put back), and the repair must leave both
nodes with the same replicated columns in every tier and the same semantic graph.
"""

from __future__ import annotations

from pathlib import Path

import memrepl
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import digests
from memrepl.sync.antientropy import CheckResult, verify_digests
from memrepl.sync.manager import MemorySyncManager

from ..files import backup, by_hand, intact, query, restore
from ..replicas import replicated_rows
from .conftest import Cluster


def graph_of(store: memrepl.Store) -> tuple[list[str], list[tuple[str, str, str]]]:
    store.semantic.reload_graph()
    graph = store.semantic.graph
    return sorted(graph.nodes), sorted(graph.edges(keys=True))


def fill(store: memrepl.Store, prefix: str, count: int) -> None:
    for n in range(count):
        store.working.add(f"{prefix}w{n}", {"n": n, "by": prefix})
        store.episodic.add(f"{prefix}e{n}", {"episode_id": prefix, "occurred_at_ns": n, "n": n})
    store.semantic.add_concept(f"{prefix}-city", "place")
    store.semantic.add_concept(f"{prefix}-country", "place")
    store.semantic.add_relation(f"{prefix}-city", "in", f"{prefix}-country")


async def sync_both(cluster: Cluster, a: str, b: str) -> None:
    for tier in MemoryTier:
        for src, dst in ((a, b), (b, a)):
            result = await cluster.managers[src].sync_with_peer(dst, tier)
            assert result.ok, result


async def check(cluster: Cluster, a: str, b: str) -> CheckResult:
    for node in (a, b):
        for tier in MemoryTier:
            verify_digests(cluster.stores[node].tier(tier))
    result = await cluster.managers[a].check_peer(b)
    await cluster.hub.settle()
    assert result.ok, result
    return result


def assert_identical(cluster: Cluster, a: str, b: str) -> None:
    path_a, path_b = (cluster.location(n) for n in (a, b))
    assert replicated_rows(path_a) == replicated_rows(path_b)
    assert graph_of(cluster.stores[a]) == graph_of(cluster.stores[b])
    assert intact(path_a) and intact(path_b)
    for store in (cluster.stores[a], cluster.stores[b]):
        for tier in MemoryTier:
            with store.read() as conn:
                spec = store.tier(tier).spec
                assert digests.find_errors(conn, spec) == {}


async def two_synced_nodes(cluster: Cluster) -> tuple[MemorySyncManager, MemorySyncManager]:
    a, b = cluster.add("node-a"), cluster.add("node-b")
    fill(cluster.stores["node-a"], "a", 12)
    fill(cluster.stores["node-b"], "b", 12)
    await sync_both(cluster, "node-a", "node-b")
    assert replicated_rows(cluster.location("node-a")) == replicated_rows(
        cluster.location("node-b")
    )
    return a, b


async def test_equal_tiers_are_one_round_trip(cluster: Cluster) -> None:
    await two_synced_nodes(cluster)
    result = await check(cluster, "node-a", "node-b")
    assert (result.tiers_compared, result.tiers_differing, result.round_trips) == (3, 0, 1)
    assert result.items_differing == result.repaired == 0


async def test_rows_deleted_and_edited_by_hand_are_repaired(cluster: Cluster) -> None:
    await two_synced_nodes(cluster)
    a_db, b_db = cluster.location("node-a"), cluster.location("node-b")
    by_hand(
        b_db,
        "DELETE FROM episodic_items WHERE item_id = 'ae3'",
        "DELETE FROM working_items WHERE item_id = 'bw4'",
        # Content changed without a new stamp: the ordinary rounds would never send it again.
        """UPDATE episodic_items SET content = '{"n": 5, "edited": true}' WHERE item_id = 'be5'""",
    )
    by_hand(a_db, f"DELETE FROM semantic_items WHERE item_id = '{relation_of('b')}'")
    # The cursors say both are up to date: an ordinary round changes nothing.
    await sync_both(cluster, "node-a", "node-b")
    assert replicated_rows(a_db) != replicated_rows(b_db)

    result = await check(cluster, "node-a", "node-b")

    assert result.items_differing == 4
    assert result.repaired >= 4  # the edited item is settled on one side or both
    assert_identical(cluster, "node-a", "node-b")
    kept = cluster.stores["node-a"].episodic.get_by_id("be5")
    assert kept is not None and kept["content"]["n"] == 5
    # The same-version pair is in the conflict log of the side that had to change.
    logged = []
    for db in (a_db, b_db):
        logged += query(
            db, "SELECT item_id, rule, winner_ts = loser_ts, batch_id LIKE 'ae-%' FROM conflicts"
        )
    assert ("be5", "same-version", 1, 1) in logged


def relation_of(prefix: str) -> str:
    from memrepl.storage.semantic import relation_id

    return relation_id(f"{prefix}-city", "in", f"{prefix}-country")


async def test_a_wiped_tier_is_refilled(cluster: Cluster) -> None:
    await two_synced_nodes(cluster)
    b_db = cluster.location("node-b")
    by_hand(b_db, "DELETE FROM semantic_items", "DELETE FROM episodic_items")

    result = await check(cluster, "node-a", "node-b")

    assert result.items_sent == result.items_differing == 24 + 6
    assert_identical(cluster, "node-a", "node-b")


async def test_an_older_copy_of_a_file_catches_up(cluster: Cluster, tmp_path: Path) -> None:
    await two_synced_nodes(cluster)
    b_db = cluster.location("node-b")
    older = tmp_path / "backup"
    backup(b_db, older)
    store_a, store_b = cluster.stores["node-a"], cluster.stores["node-b"]
    store_a.episodic.update("ae1", {"episode_id": "a", "n": 100})
    store_a.episodic.delete("ae2")
    store_b.working.merge("bw1", {"later": True})
    store_b.episodic.add("b-new", {"episode_id": "b"})
    await sync_both(cluster, "node-a", "node-b")

    cluster.stores.pop("node-b").close()
    restore(b_db, older)
    cluster.add("node-b")

    result = await check(cluster, "node-a", "node-b")

    assert result.items_differing == 4
    assert_identical(cluster, "node-a", "node-b")
    restored = cluster.stores["node-b"]
    assert restored.episodic.get_by_id("ae2") is None
    assert restored.working.get_by_id("bw1")["content"]["later"] is True  # type: ignore[index]
