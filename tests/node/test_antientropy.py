"""Anti-entropy between real ``memrepl serve`` processes over authenticated TCP on 127.0.0.1.

A row changed by hand on one node (``sqlite3``, no new stamp, so no cursor ever moves) is found
by that node's verification and the periodic digest check, and repaired on its own; ``memrepl
sync`` does the same once, on demand, and says what it repaired.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import memrepl

from ..replicas import replicated_rows
from .helpers import Processes, converged, memrepl_sync, rows


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
    lines = [json.loads(line) for line in again.stdout.splitlines()]
    (check,) = [line["antientropy"] for line in lines if "antientropy" in line]
    assert check["items_differing"] == 2
    assert check["items_sent"] == 0 and check["items_fetched"] == 2
    assert check["repaired"] == 2 and check["error"] is None
    assert rows(c, "SELECT count(*) FROM episodic_items")[0][0] == 40
