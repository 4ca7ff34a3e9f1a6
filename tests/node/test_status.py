"""``memrepl status`` beside running ``memrepl serve`` processes: every peer, and the truth about
one whose handshake fails because its cluster key differs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .helpers import Processes

FAST = ("--sync-interval", "0.5", "--high-delay", "0.1")


def status(db: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "memrepl", "status", "--json", "--db", str(db)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def status_text(db: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "memrepl", "status", "--db", str(db)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout


def test_a_wrong_key_shows_in_status_as_such_on_both_nodes(processes: Processes) -> None:
    a = processes.node("a", *FAST).start()
    wrong = processes.directory / "wrong.key"
    wrong.write_text("another-cluster-key-entirely-0123456789\n")
    b = processes.node("b", *FAST)
    b.start("--peer", a.address, "--key-file", str(wrong))

    def b_reports_the_key() -> bool:
        peers = status(b.db)["peers"]
        return bool(peers) and peers[0].get("last_error_code") == "auth-failed"

    processes.wait(b_reports_the_key, 30, "b's status names the failed handshake")
    peer = status(b.db)["peers"][0]
    assert (peer["peer_id"], peer["connection"]) == ("a", "not connected")
    assert peer["handshake_failures"] >= 1
    assert "cluster credentials differ" in peer["advice"]
    text = status_text(b.db)
    line = next(line for line in text.splitlines() if line.startswith("a "))
    assert "not connected" in line and "the cluster credentials differ" in line
    # The listener does not know b (b dials it): it counts the refusals and says why.
    processes.wait(
        lambda: status(a.db)["daemon"]["refused_connections"] >= 1, 30, "a counts refusals"
    )
    daemon = status(a.db)["daemon"]
    assert daemon["state"] == "running"
    assert daemon["last_refused_code"] == "auth-failed"
    assert "claiming 'b'" in daemon["last_refused"]
    assert "the cluster credentials differ" in status_text(a.db)
    # The log says it once with the advice, not on every redial.
    warnings = [line for line in b.log_text().splitlines() if "failed: auth-failed" in line]
    assert 1 <= len(warnings) <= 2, warnings
    assert "the cluster credentials differ" in warnings[0]
    assert (a.stop(), b.stop()) == (0, 0)
    assert status(a.db)["daemon"]["state"] == "stopped"


def test_a_connected_peer_and_its_rounds(processes: Processes) -> None:
    a = processes.node("a", *FAST).start()
    b = processes.node("b", *FAST).start("--peer", a.address)

    def connected_and_synced() -> bool:
        peers = status(b.db)["peers"]
        return (
            len(peers) == 1
            and peers[0]["connection"] == "connected"
            and all(t["last_status"] in ("synced", "up-to-date") for t in peers[0]["tiers"])
        )

    processes.wait(connected_and_synced, 30, "b shows a connected, its rounds done")
    (peer,) = status(b.db)["peers"]
    assert peer["address"] == f"127.0.0.1:{a.port}"
    assert peer["dialled_by"] == "b"
    text = status_text(b.db)
    assert "connected (dialled by b)" in text
    assert (a.stop(), b.stop()) == (0, 0)
