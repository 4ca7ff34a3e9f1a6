"""``memrepl status``: counts per tier, and replication per tier and peer."""

from __future__ import annotations

from pathlib import Path

import pytest

from memrepl.protocol.enums import MemoryTier
from memrepl.storage.migrate import HEAD_REVISION, REPLICATION_REVISION

from .conftest import Cli, Nodes


def test_a_store_without_peers(db: Path, cli: Cli) -> None:
    cli("put", "working", "a", "{}", "--db", db)
    cli("put", "working", "b", "{}", "--db", db)
    cli("delete", "working", "b", "--db", db)
    latest = cli("put", "semantic", "c", '{"kind": "concept"}', "--db", db).json()["modified_at"]

    data = cli("status", "--json", "--db", db).json()
    assert data["node_id"] == "node-a"
    assert data["revision"] == HEAD_REVISION
    assert data["replication_revision"] == REPLICATION_REVISION
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
    assert lines[2].split()[:4] == ["tier", "items", "tombstones", "conflicts"]
    assert lines[4].split()[:4] == ["working", "1", "1", "0"]
    assert lines[-1] == "no peers yet: nothing was synced with this store"


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


def test_peers_behind_and_inbound(synced: Nodes, cli: Cli) -> None:
    a, b = synced.stores["node-a"], synced.stores["node-b"]
    acked = synced.managers["node-a"].get_sync_vector(MemoryTier.WORKING)["node-b"]
    latest = a.working.get_modified_since(0)[-1]["modified_at"]

    sender = cli("status", "--json", "--db", synced.path("node-a")).json()
    assert sender["peers"] == [
        {
            "tier": "working",
            "peer_id": "node-b",
            "acked_cursor": acked,
            "items_behind": 2,
            "seconds_behind": round((latest - acked) / 1e9, 3),
            "inbound_cursor": None,
            "last_error": None,
        }
    ]
    # The receiver never sent anything to node-a (no acked cursor), and what it holds came from
    # node-a, so none of it would be sent back: 0 items behind.
    receiver = cli("status", "--json", "--db", synced.path("node-b")).json()
    assert receiver["peers"] == [
        {
            "tier": "working",
            "peer_id": "node-a",
            "acked_cursor": None,
            "items_behind": 0,
            "seconds_behind": 0.0,
            "inbound_cursor": acked,
            "last_error": None,
        }
    ]
    assert b.node_id == "node-b"

    table = cli("status", "--db", synced.path("node-a")).out.splitlines()
    header = next(i for i, line in enumerate(table) if " peer " in line)
    assert table[header].split("  ")[0].strip() == "tier"
    row = table[header + 2].split()
    assert row[0:2] == ["working", "node-b"]
    assert row[3] == "2"


def test_a_peer_that_never_acknowledged_has_unknown_seconds(nodes: Nodes, cli: Cli) -> None:
    a = nodes.add("node-a")
    nodes.add("node-b")
    nodes.stores["node-b"].working.add("from-b", {})
    nodes.ship("node-b", "node-a", MemoryTier.WORKING)
    a.working.add("mine", {})
    peers = cli("status", "--json", "--db", nodes.path("node-a")).json()["peers"]
    assert [
        (p["peer_id"], p["acked_cursor"], p["items_behind"], p["seconds_behind"]) for p in peers
    ] == [("node-b", None, 1, None)]


def test_the_last_error_comes_from_the_node_status_file(
    synced: Nodes, cli: Cli, tmp_path: Path
) -> None:
    status_file = tmp_path / "node-a.status.json"
    status_file.write_text(
        '{"node_id": "node-a", "peers": [{"peer_id": "node-b", "tier": "working", '
        '"last_error": "timeout: no answer for batch 42"}]}'
    )
    db = synced.path("node-a")
    data = cli("status", "--json", "--db", db, "--node-status", status_file).json()
    assert data["peers"][0]["last_error"] == "timeout: no answer for batch 42"
    assert (
        "timeout: no answer for batch 42"
        in cli("status", "--db", db, "--node-status", status_file).out
    )
    status_file.write_text("not json")
    refused = cli("status", "--db", db, "--node-status", status_file)
    assert refused.code == 1 and "node status file" in refused.err
