"""``memrepl status``: what the store holds, every peer, where replication stands -- read-only."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from memrepl.protocol.enums import MemoryTier
from memrepl.storage.migrate import HEAD_REVISION, REPLICATION_REVISION

from ..files import dump, query
from .conftest import Cli, Nodes

REPO = Path(__file__).resolve().parents[2]


def test_a_store_without_peers(db: Path, cli: Cli) -> None:
    cli("put", "working", "a", "{}", "--db", db)
    cli("put", "working", "b", "{}", "--db", db)
    cli("delete", "working", "b", "--db", db)
    latest = cli("put", "semantic", "c", '{"kind": "concept"}', "--db", db).json()["modified_at"]
    before = dump(db)

    data = cli("status", "--json", "--db", db).json()
    assert data["node_id"] == "node-a"
    assert data["revision"] == HEAD_REVISION
    assert data["replication_revision"] == REPLICATION_REVISION
    assert data["daemon"]["state"] == "none"
    tiers = {tier["tier"]: tier for tier in data["tiers"]}
    assert tiers["working"]["items"] == 1
    assert tiers["working"]["tombstones"] == 1
    assert tiers["episodic"] == {
        "tier": "episodic",
        "items": 0,
        "tombstones": 0,
        "conflicts": 0,
        "latest_modified_at": 0,
        "purged_through": 0,
    }
    assert tiers["semantic"]["latest_modified_at"] == latest
    assert data["peers"] == []

    text = cli("status", "--db", db)
    assert text.code == 0
    lines = text.out.splitlines()
    assert lines[0] == (
        f"node node-a  store {db}  schema {HEAD_REVISION}  replication {REPLICATION_REVISION}"
    )
    assert lines[1].startswith("daemon: no report at ")
    assert lines[3].split()[:4] == ["tier", "items", "tombstones", "conflicts"]
    assert lines[5].split()[:4] == ["working", "1", "1", "0"]
    assert lines[-1] == "no peers: none configured, connected, or synced with this store"
    assert dump(db) == before


@pytest.fixture
def synced(nodes: Nodes) -> Nodes:
    """node-a sent three working items to node-b, which acknowledged them; then wrote two more."""
    a = nodes.add("node-a")
    nodes.add("node-b")
    for item_id in ("w1", "w2", "w3"):
        a.working.add(item_id, {"n": item_id})
    batch = nodes.managers["node-a"].create_delta_batch(MemoryTier.WORKING, "node-b")
    assert nodes.managers["node-b"].apply_sync_batch(batch) == (3, 0)
    assert batch.cursor is not None
    nodes.managers["node-a"].update_sync_vector(MemoryTier.WORKING, "node-b", batch.cursor)
    a.working.add("w4", {})
    a.working.update("w1", {"n": "changed"})
    return nodes


def test_peers_behind_lag_and_inbound(synced: Nodes, cli: Cli) -> None:
    acked = synced.managers["node-a"].get_sync_vector(MemoryTier.WORKING)["node-b"]
    unacked = [r["modified_at"] for r in synced.stores["node-a"].working.get_modified_since(acked)]
    assert len(unacked) == 2
    before_ns = time.time_ns()
    sender = cli("status", "--json", "--db", synced.path("node-a")).json()
    after_ns = time.time_ns()
    (peer,) = sender["peers"]
    assert (peer["peer_id"], peer["connection"], peer["last_error"]) == ("node-b", "unknown", None)
    (working,) = peer["tiers"]
    assert (working["tier"], working["acked_cursor"], working["items_behind"]) == (
        "working", acked, 2
    )  # fmt: skip
    # Lag: the age of the oldest change node-b has not acknowledged.
    assert (before_ns - min(unacked)) / 1e9 - 0.001 <= working["lag_s"]
    assert working["lag_s"] <= (after_ns - min(unacked)) / 1e9 + 0.001
    assert working["inbound_cursor"] is None
    # The receiver: what it holds came from node-a, so none of it would be sent back.
    receiver = cli("status", "--json", "--db", synced.path("node-b")).json()
    (tier,) = receiver["peers"][0]["tiers"]
    assert (tier["items_behind"], tier["lag_s"], tier["inbound_cursor"]) == (0, 0.0, acked)

    table = cli("status", "--db", synced.path("node-a")).out.splitlines()
    header = next(i for i, line in enumerate(table) if line.split()[:2] == ["tier", "peer"])
    row = table[header + 2].split()
    assert row[0:2] == ["working", "node-b"]
    assert row[3] == "2"


def report(peers: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    """A node report as 'memrepl serve' writes it (memrepl.node.report), by default live."""
    document = {
        "node_id": "node-a", "pid": os.getpid(), "listening": "127.0.0.1:7401",
        "written_at_ns": time.time_ns(), "every_s": 2.0, "peers": peers,
        "refused_connections": 0, "last_refused": None, "last_refused_code": None,
        "last_refused_advice": None, "stopped_at_ns": None, "format": 1,
    }  # fmt: skip
    document.update(overrides)
    return document


FAILING_PEER = {
    "peer_id": "node-c",
    "address": "10.0.0.3:7401",
    "connection": "not connected",
    "last_error": "auth-failed: the listener did not prove it holds the cluster key",
    "last_error_code": "auth-failed",
    "last_error_ns": time.time_ns(),
    "advice": "the cluster credentials differ: this node and the peer hold different keys",
    "handshake_failures": 4,
    "tiers": [
        {
            "tier": "episodic",
            "last_status": "unreachable",
            "last_error": "unreachable: peer 'node-c': unreachable",
            "last_error_ns": time.time_ns(),
            "receiving": {"total": 5000, "done": 1000, "eta_s": 4.2, "stalled": False},
        }
    ],
}


def test_every_peer_of_the_running_node_with_its_error_and_catch_up(
    synced: Nodes, cli: Cli
) -> None:
    db = synced.path("node-a")
    check = {
        "peer_id": "node-c", "started_ns": time.time_ns(), "ranges_compared": 3,
        "items_differing": 2, "items_sent": 1, "items_fetched": 1, "repaired": 2, "error": None,
    }  # fmt: skip
    repairs = {"last_verified_ns": None, "last_verify_corrected": 0, "checks": [check]}
    Path(f"{db}.status.json").write_text(json.dumps(report([FAILING_PEER], antientropy=repairs)))
    data = cli("status", "--json", "--db", db).json()
    assert data["daemon"]["state"] == "running"
    peers = {peer["peer_id"]: peer for peer in data["peers"]}
    # node-b from the tables, node-c only from the node's configuration.
    assert sorted(peers) == ["node-b", "node-c"]
    assert peers["node-c"]["connection"] == "not connected"
    assert peers["node-c"]["last_error_code"] == "auth-failed"
    text = cli("status", "--db", db).out
    assert "daemon: running, pid" in text
    line = next(line for line in text.splitlines() if line.startswith("node-c  10.0.0.3:7401"))
    assert "not connected" in line
    assert "auth-failed" in line and "the cluster credentials differ" in line
    catching_up = next(line for line in text.splitlines() if line.startswith("episodic  node-c"))
    assert "1,000/5,000, ETA 4 s" in catching_up
    # The last anti-entropy check, as the node reported it.
    assert data["antientropy"] == repairs
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("anti-entropy peer"))
    assert lines[header + 2].split()[2:] == ["3", "2", "1", "1", "2"]


def test_a_report_of_a_node_that_is_gone_is_not_live(synced: Nodes, cli: Cli) -> None:
    db = synced.path("node-a")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    status_file = db.parent / "elsewhere.json"
    status_file.write_text(json.dumps(report([FAILING_PEER], pid=int(dead.stdout))))
    data = cli("status", "--json", "--db", db, "--node-status", status_file).json()
    assert data["daemon"]["state"] == "not running"
    node_c = next(peer for peer in data["peers"] if peer["peer_id"] == "node-c")
    assert node_c["connection"] == "unknown"
    assert node_c["tiers"][0]["receiving"] is None
    stopped = report([], stopped_at_ns=time.time_ns())
    status_file.write_text(json.dumps(stopped))
    assert (
        cli("status", "--json", "--db", db, "--node-status", status_file).json()["daemon"]["state"]
        == "stopped"
    )
    stale = report([], written_at_ns=time.time_ns() - 60 * 10**9)
    status_file.write_text(json.dumps(stale))
    assert "daemon: not responding" in cli("status", "--db", db, "--node-status", status_file).out


def test_a_bad_report_is_a_clear_error(synced: Nodes, cli: Cli, tmp_path: Path) -> None:
    db = synced.path("node-a")
    status_file = tmp_path / "report.json"
    for text in ("not json", "[1, 2]", '{"node_id": "x"}'):
        status_file.write_text(text)
        refused = cli("status", "--db", db, "--node-status", status_file)
        assert refused.code == 1 and "node status file" in refused.err
    missing = cli("status", "--db", db, "--node-status", tmp_path / "none.json")
    assert missing.code == 1 and "no such file" in missing.err


def test_a_store_made_by_alembic_alone(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "alembic.db"
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"db={path}", "upgrade", "head"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    before = dump(path)
    status = cli("status", "--db", path)
    assert status.code == 0, status.err
    assert status.out.startswith("node (none yet: memrepl init --node-id ID)  store")
    assert cli("status", "--json", "--db", path).json()["node_id"] is None
    assert dump(path) == before
    # A command that writes says how to give it a node id; init does.
    put = cli("put", "working", "x", "{}", "--db", path)
    assert put.code == 1 and f"'memrepl init --node-id ID --db {path}'" in put.err
    assert cli("init", "--node-id", "node-a", "--db", path).code == 0
    assert cli("status", "--json", "--db", path).json()["node_id"] == "node-a"


def test_a_store_behind_the_head_is_not_migrated_by_status(db: Path, cli: Cli) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("CREATE INDEX ix_conflicts_tier_item ON conflicts (tier, item_id)")
        conn.execute("UPDATE alembic_version SET version_num = '0002'")
    conn.close()
    before = dump(db)
    status = cli("status", "--db", db)
    assert status.code == 1
    assert f"run 'memrepl db upgrade --db {db}'" in status.err
    assert dump(db) == before
    assert query(db, "SELECT version_num FROM alembic_version") == [("0002",)]
