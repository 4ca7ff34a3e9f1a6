"""``memrepl serve`` processes on 127.0.0.1 replicating to each other, for real.

Each node is a child process with its own store file; the test process writes into those files
with ``memrepl.open`` (another process on the same store, as an application would) and reads them
back with plain sqlite3. Convergence means equal digests of every tier (id, deletion, content and
version of every row) in every store.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import memrepl
from memrepl.protocol.enums import MemoryTier, SyncPriority
from memrepl.storage.items import LocalWrite

from ..certs import self_signed
from .helpers import Processes, converged, count, digest, rows

#: Short rounds, so the background path is exercised within a test.
FAST = ("--sync-interval", "0.5", "--high-delay", "0.1", "--ack-timeout", "5")


def write_shared(db: Path, node_id: str) -> None:
    """The same ids on every node, written before the nodes run: concurrent, so conflicts."""
    with memrepl.open(db, node_id=node_id) as store:
        for tier in (store.working, store.episodic, store.semantic):
            tier.merge("shared-1", {f"field-{node_id}": node_id})
            tier.add("shared-2", {"winner?": node_id})


def write_mix(db: Path, node_id: str, prefix: str, n: int = 20) -> None:
    """Writes on every tier at every priority, updates, merges and deletes."""
    with memrepl.open(db, node_id=node_id) as store:
        priorities = list(SyncPriority)
        store.working.write_many(
            [
                LocalWrite.add(f"{prefix}-w{i}", {"i": i, "by": node_id}, priorities[i % 5])
                for i in range(n)
            ]
        )
        store.episodic.write_many(
            [
                LocalWrite.add(
                    f"{prefix}-e{i}",
                    {"episode_id": f"ep-{i % 3}", "occurred_at_ns": i, "by": node_id},
                    priorities[(i + 2) % 5],
                )
                for i in range(n)
            ]
        )
        store.semantic.add(f"{prefix}-c1", {"kind": "concept", "name": f"{prefix} one"})
        store.semantic.add(f"{prefix}-c2", {"kind": "concept", "name": f"{prefix} two"})
        store.semantic.add(
            f"{prefix}-r1",
            {"kind": "relation", "source": f"{prefix}-c1", "target": f"{prefix}-c2"},
            priority=SyncPriority.URGENT,
        )
        store.working.update(f"{prefix}-w1", {"updated": True})
        store.episodic.merge(f"{prefix}-e2", {"note": "merged"})
        store.episodic.delete(f"{prefix}-e3")


def conflict_rows(db: Path) -> list[tuple[int, str, int]]:
    """``(tier, item_id, rows)`` of the conflict log."""
    return [
        (int(t), str(i), int(n))
        for t, i, n in rows(db, "SELECT tier, item_id, count(*) FROM conflicts GROUP BY 1, 2")
    ]


def test_two_nodes_converge_on_every_tier(processes: Processes) -> None:
    status_file = processes.directory / "a-status.json"
    a = processes.node("a", *FAST, "--status-file", str(status_file))
    b = processes.node("b", *FAST)
    for node in (a, b):
        write_shared(node.db, node.node_id)
    a.start()
    b.start("--peer", a.address)
    write_mix(a.db, "a", "a")
    write_mix(b.db, "b", "b")
    took = processes.wait(converged([a.db, b.db]), 20, "a and b converge")
    print(f"converged in {took:.2f} s")
    for tier in MemoryTier:
        assert count(a.db, tier) > 0
    # Every shared id was written on both nodes concurrently: a conflict on one side or both,
    # one row per pair, each kept with the loser's content.
    for db in (a.db, b.db):
        assert all(n == 1 for _, _, n in conflict_rows(db)), conflict_rows(db)
    shared = {(t, i) for db in (a.db, b.db) for t, i, _ in conflict_rows(db)}
    assert shared == {(int(t), i) for t in MemoryTier for i in ("shared-1", "shared-2")}
    # The merged fields of shared-1 reached both nodes.
    for db in (a.db, b.db):
        found = rows(db, "SELECT content FROM episodic_items WHERE item_id = 'shared-1'")
        assert json.loads(found[0][0]) == {"field-a": "a", "field-b": "b"}

    def status_shows_b() -> bool:
        if not status_file.exists():
            return False
        peers = json.loads(status_file.read_text())["peers"]
        tiers = [t for p in peers if p["peer_id"] == "b" for t in p["tiers"]]
        return sorted(t["tier"] for t in tiers if t["last_success_ns"]) == [
            "episodic", "semantic", "working"
        ]  # fmt: skip

    processes.wait(status_shows_b, 10, "a's status file shows its rounds with b")
    assert (a.stop(), b.stop()) == (0, 0)
    assert "listening on 127.0.0.1:" in a.log_text()
    assert json.loads(status_file.read_text())["node_id"] == "a"


def test_three_nodes_converge_on_every_tier(processes: Processes) -> None:
    a, b, c = (processes.node(name, *FAST) for name in "abc")
    for node in (a, b, c):
        write_shared(node.db, node.node_id)
    a.start()
    b.start("--peer", a.address)
    c.start("--peer", a.address, "--peer", b.address)
    for node in (a, b, c):
        write_mix(node.db, node.node_id, node.node_id)
    dbs = [a.db, b.db, c.db]
    processes.wait(converged(dbs), 25, "a, b and c converge")
    assert count(c.db, MemoryTier.EPISODIC) == 3 * 19 + 2
    assert {i for db in dbs for _, i, _ in conflict_rows(db)} == {"shared-1", "shared-2"}
    assert [node.stop() for node in (a, b, c)] == [0, 0, 0]


def test_sigkill_mid_transfer_then_restart_loses_and_duplicates_nothing(
    processes: Processes,
) -> None:
    total = 20_000
    a = processes.node("a", *FAST)
    b = processes.node("b", *FAST)
    with memrepl.open(a.db, node_id="a") as store:
        store.episodic.write_many(
            [LocalWrite.add(f"ev-{i:05d}", {"n": i, "text": "x" * 40}) for i in range(total)]
        )
    with memrepl.open(b.db, node_id="b") as store:
        # Items a also holds, written here independently: 50 conflicts on the way.
        store.episodic.write_many(
            [LocalWrite.add(f"ev-{i:05d}", {"n": -i}) for i in range(0, total, total // 50)]
        )
    a.start()
    b.start("--peer", a.address)
    processes.wait(lambda: count(b.db, MemoryTier.EPISODIC) > 2_000, 30, "the transfer starts")
    b.kill()
    received = count(b.db, MemoryTier.EPISODIC)
    assert received < total, "the transfer finished before the kill: make it longer"
    assert rows(b.db, "PRAGMA integrity_check") == [("ok",)]
    b.start("--peer", a.address)
    processes.wait(converged([a.db, b.db]), 60, "b catches up after SIGKILL")
    assert count(b.db, MemoryTier.EPISODIC) == total
    # Each of the 50 items written on both sides is one conflict (seen on one side or both),
    # and no redelivery after the kill logged one twice.
    both = {f"ev-{i:05d}" for i in range(0, total, total // 50)}
    assert {i for db in (a.db, b.db) for _, i, _ in conflict_rows(db)} == both
    for db in (a.db, b.db):
        assert all(n == 1 for _, _, n in conflict_rows(db)), db.name
    assert (a.stop(), b.stop()) == (0, 0)


def test_a_node_down_for_a_while_is_caught_up(processes: Processes) -> None:
    a = processes.node("a", *FAST).start()
    b = processes.node("b", *FAST).start("--peer", a.address)
    write_mix(a.db, "a", "first")
    processes.wait(converged([a.db, b.db]), 20, "first convergence")
    assert b.stop() == 0
    write_mix(a.db, "a", "later")
    with memrepl.open(a.db, node_id="a") as store:
        store.episodic.delete("first-e5")
        store.semantic.update("first-c1", {"kind": "concept", "name": "renamed"})
    time.sleep(1.0)
    assert digest(a.db, MemoryTier.EPISODIC) != digest(b.db, MemoryTier.EPISODIC)
    b.start("--peer", a.address)
    processes.wait(converged([a.db, b.db]), 20, "b caught up after its downtime")
    assert (a.stop(), b.stop()) == (0, 0)


def test_a_node_below_the_purge_horizon_gets_a_snapshot(processes: Processes) -> None:
    collecting = (
        "--tombstone-grace",
        "0",
        "--purge-interval",
        "0.2",
        "--forget-peer-after",
        "0.5",
    )
    a = processes.node("a", *FAST, *collecting).start()
    # The same tombstone grace on both: b forgets, on a's word, only deletes a peer with its own
    # grace could have collected (memrepl.sync.snapshots).
    b = processes.node("b", *FAST, "--tombstone-grace", "0").start("--peer", a.address)
    write_mix(a.db, "a", "a", n=30)
    processes.wait(converged([a.db, b.db]), 20, "first convergence")
    assert b.stop() == 0
    deleted = [f"a-e{i}" for i in range(10, 20)]
    with memrepl.open(a.db, node_id="a") as store:
        for item_id in deleted:
            store.episodic.delete(item_id)
    tier = int(MemoryTier.EPISODIC)

    def collected() -> bool:
        horizon = rows(a.db, "SELECT purged_through FROM tombstone_horizons WHERE tier = ?", tier)
        gone = rows(a.db, "SELECT count(*) FROM episodic_items WHERE item_id IN ('a-e10', 'a-e19')")
        return bool(horizon) and gone == [(0,)]

    # b is silent, so a forgets it and collects the tombstones b never saw.
    processes.wait(collected, 20, "a purges the deletes b missed")
    forgotten = "SELECT count(*) FROM sync_vectors WHERE peer_id = 'b' AND tier = ?"
    assert rows(a.db, forgotten, tier) == [(0,)]
    assert count(b.db, MemoryTier.EPISODIC) == count(a.db, MemoryTier.EPISODIC) + len(deleted)
    b.start("--peer", a.address)
    processes.wait(converged([a.db, b.db], live_only=True), 20, "b is brought back with a snapshot")
    assert rows(b.db, "SELECT count(*) FROM episodic_items WHERE item_id = 'a-e10'") == [(0,)]
    # b asked for the snapshot, and kept what it forgot, whole, in forgotten_items: the live
    # items whose deletes a collected (and maybe the tombstone of a-e3, deleted before b left,
    # if a had collected it by then).
    forgot = (
        "SELECT item_id, peer_id, json_extract(content, '$.occurred_at_ns') FROM forgotten_items "
        "WHERE NOT deleted"
    )
    assert sorted(rows(b.db, forgot)) == sorted(
        (item_id, "a", int(item_id.removeprefix("a-e"))) for item_id in deleted
    )
    tombstone = "SELECT item_id FROM forgotten_items WHERE deleted"
    assert rows(b.db, tombstone) in ([], [("a-e3",)])
    assert "asking it for a snapshot" in b.log_text()
    # The round's result is logged once its last ACK is in, a moment after b holds it all.
    processes.wait(lambda: "as a snapshot" in a.log_text(), 5, "a logs the snapshot it sent")
    assert (a.stop(), b.stop()) == (0, 0)


def test_two_nodes_over_mutual_tls(processes: Processes) -> None:
    cert, key = self_signed(processes.directory)
    tls = ("--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(cert))
    a = processes.node("a", *FAST, *tls).start()
    b = processes.node("b", *FAST, *tls).start("--peer", a.address)
    write_mix(a.db, "a", "a")
    processes.wait(converged([a.db, b.db]), 20, "a and b converge over TLS")
    # Without TLS, b cannot even get through the handshake.
    c = processes.node("c", *FAST).start("--peer", a.address)
    time.sleep(1.0)
    assert count(c.db, MemoryTier.EPISODIC) == 0
    assert [node.stop() for node in (a, b, c)] == [0, 0, 0]
