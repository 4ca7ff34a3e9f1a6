"""Anti-entropy between real ``memrepl serve`` processes over authenticated TCP on 127.0.0.1.

A row changed by hand on one node (``sqlite3``, no new stamp, so no cursor ever moves) is found
by that node's verification and the periodic digest check, and repaired on its own; ``memrepl
sync`` does the same once, on demand, and says what it repaired.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import memrepl
from memrepl.mesh import LocalMesh
from memrepl.node.repair import RepairSchedule
from memrepl.protocol.enums import MemoryTier
from memrepl.sync.manager import MemorySyncManager

from ..replicas import replicated_rows
from .helpers import KEY, Processes, converged, memrepl_sync, rows
from .hostile_tcp import HostilePeer


def seed(db: Path, node_id: str) -> None:
    with memrepl.open(db, node_id=node_id) as store:
        for n in range(20):
            store.episodic.add(f"{node_id}-e{n}", {"episode_id": node_id, "n": n})
            store.working.add(f"{node_id}-w{n}", {"n": n})


def by_hand(db: Path, *statements: str) -> None:
    with sqlite3.connect(db, timeout=10) as conn:
        for statement in statements:
            conn.execute(statement)


def test_the_daemon_repairs_a_hand_edit_on_its_own(processes: Processes) -> None:
    fast = ("--sync-interval", "0.5", "--ack-timeout", "5")
    checks = ("--antientropy-interval", "0.5", "--verify-interval", "0.5")
    a = processes.node("node-a", *fast, *checks)
    b = processes.node("node-b", *fast, *checks)
    seed(a.db, "node-a")
    seed(b.db, "node-b")
    a.start()
    b.start("--peer", a.address)
    processes.wait(converged([a.db, b.db]), 30, "the ordinary rounds converge")
    before = replicated_rows(a.db)

    by_hand(
        b.db,
        "DELETE FROM episodic_items WHERE item_id = 'node-a-e3'",
        """UPDATE working_items SET content = '{"n": 99}' WHERE item_id = 'node-a-w4'""",
    )
    by_hand(a.db, "DELETE FROM episodic_items WHERE item_id = 'node-b-e7'")

    processes.wait(
        lambda: (
            replicated_rows(a.db) == replicated_rows(b.db)
            and len(replicated_rows(a.db)) == len(before)
            and rows(b.db, "SELECT count(*) FROM episodic_items WHERE item_id = 'node-a-e3'")
            == [(1,)]
        ),
        60,
        "the periodic checks repair both nodes",
    )
    for db in (a.db, b.db):
        assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    logs = processes.logs()
    assert "digests were wrong" in logs
    assert "anti-entropy with" in logs
    # The hand-edited working item was settled by the same-version rule, logged as a conflict.
    logged = rows(a.db, "SELECT rule FROM conflicts WHERE item_id = 'node-a-w4'") + rows(
        b.db, "SELECT rule FROM conflicts WHERE item_id = 'node-a-w4'"
    )
    assert ("same-version",) in logged


def test_memrepl_sync_checks_once(processes: Processes) -> None:
    a = processes.node("node-a", "--sync-interval", "60", "--antientropy-interval", "0")
    seed(a.db, "node-a")
    a.start()
    c = processes.directory / "c.db"
    seed(c, "node-c")
    key = processes.directory / "cluster.key"
    first = memrepl_sync("--db", c, "--peer", a.address, "--key-file", key)
    assert first.returncode == 0, first.stderr
    by_hand(c, "DELETE FROM episodic_items WHERE item_id IN ('node-a-e1', 'node-c-e2')")

    again = memrepl_sync("--db", c, "--peer", a.address, "--key-file", key, "--json")

    assert again.returncode == 0, again.stderr
    lines = json.loads(again.stdout)
    (check,) = [line["antientropy"] for line in lines if "antientropy" in line]
    assert check["items_differing"] == 2
    assert check["items_sent"] == 0 and check["items_fetched"] == 2
    assert check["repaired"] == 2 and check["error"] is None
    assert rows(c, "SELECT count(*) FROM episodic_items")[0][0] == 40


def test_a_silent_peer_does_not_hold_up_the_repairs_with_the_others(
    processes: Processes,
) -> None:
    """'aaa' is connected to node-a and never answers a digest query. node-a used to check its
    peers one after another, aaa first (sorted), so its repair with node-b waited out aaa's
    ACK timeout (60 s here) in every pass. Each peer's check now runs on its own."""
    fast = ("--sync-interval", "0.5", "--ack-timeout", "60")
    a = processes.node("node-a", *fast, "--antientropy-interval", "0.5", "--verify-interval", "0.5")
    b = processes.node("node-b", *fast, "--antientropy-interval", "0")  # only node-a checks
    seed(a.db, "node-a")
    a.start()
    b.start("--peer", a.address)
    processes.wait(converged([a.db, b.db]), 30, "the ordinary rounds converge")

    async def attack() -> None:
        silent = await HostilePeer.connect(a.port, KEY.encode(), node_id="aaa", node="node-a")
        try:
            deadline = time.monotonic() + 20
            while not silent.queries:
                assert time.monotonic() < deadline, "node-a never checked with aaa"
                await asyncio.sleep(0.05)
            # node-a's check with aaa now waits for an answer that never comes.
            by_hand(a.db, "DELETE FROM episodic_items WHERE item_id = 'node-a-e3'")
            await asyncio.to_thread(
                processes.wait,
                lambda: (
                    rows(a.db, "SELECT count(*) FROM episodic_items WHERE item_id = 'node-a-e3'")
                    == [(1,)]
                ),
                30,
                "node-a's check with node-b repairs the row deleted by hand",
            )
            assert len(silent.queries) == 1  # still the one summary query, unanswered
        finally:
            await silent.close()

    asyncio.run(attack())
    assert replicated_rows(a.db) == replicated_rows(b.db)
    assert (a.stop(), b.stop()) == (0, 0)


async def test_a_check_still_running_leaves_no_due_time_behind(tmp_path: Path) -> None:
    """While a pass of checks ran, the next check's due time stayed in the past: the scheduler,
    which sleeps until the earliest due time, woke up for it again and again (a running node's
    CPU went from 1 % to 20 % while a peer did not answer). A due time now moves on when it
    comes, whether or not the check before is still running."""
    hub = LocalMesh()
    hub.endpoint("aaa")  # connected, and silent
    manager = MemorySyncManager(node_id="node-a", mesh=hub.endpoint("node-a"), ack_timeout_s=60)
    with memrepl.open(tmp_path / "a.db", node_id="node-a") as store:
        manager.register_memory_tier(MemoryTier.EPISODIC, store.episodic)
        schedule = RepairSchedule(
            manager, lambda: ["aaa"], check_interval_s=1.0, verify_interval_s=None
        )
        schedule.start(100.0)
        schedule.tick(101.0)  # aaa's check starts, and waits for an answer
        await asyncio.sleep(0.05)
        schedule.tick(102.5)
        assert schedule.next_due == 103.5
        assert "aaa" not in schedule.last
        await schedule.stop()
