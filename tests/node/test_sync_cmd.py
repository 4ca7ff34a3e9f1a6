"""``memrepl sync``: one round from a store file to a running ``memrepl serve`` node."""

from __future__ import annotations

import json

import memrepl
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.items import LocalWrite

from .helpers import Processes, count, memrepl_sync


def test_sync_pushes_every_tier_to_a_serving_node(processes: Processes) -> None:
    a = processes.node("a", "--sync-interval", "60").start()
    c = processes.directory / "c.db"
    with memrepl.open(c, node_id="c") as store:
        store.episodic.write_many([LocalWrite.add(f"e{i}", {"i": i}) for i in range(500)])
        store.working.add("w", {"x": 1})
        store.semantic.add("s", {"kind": "concept"})
    key = processes.directory / "cluster.key"
    done = memrepl_sync("--db", c, "--peer", a.address, "--key-file", key)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == [
        "tier", "status", "batches", "items", "applied", "conflicts", "snapshot", "error"
    ]  # fmt: skip
    # "up-to-date" for a tier whose items reached a some other way first.
    assert [line.split()[0] for line in lines[2:5]] == ["working", "episodic", "semantic"]
    assert all(line.split()[1] in ("synced", "up-to-date") for line in lines[2:5])
    # Then the anti-entropy check: the tiers were equal after the rounds.
    assert lines[5].startswith("anti-entropy: 0 of 3 tiers differed, 0 items")
    assert count(a.db, MemoryTier.EPISODIC) == 500
    again = memrepl_sync(
        "--db", c, "--peer", a.address, "--key-file", key, "--tier", "episodic", "--json"
    )
    assert again.returncode == 0, again.stderr
    (result,) = [r for r in json.loads(again.stdout) if "tier" in r]
    assert (result["tier"], result["status"], result["ok"]) == ("episodic", "up-to-date", True)
    assert a.stop() == 0


def test_sync_with_a_short_key_is_refused_before_dialling(processes: Processes) -> None:
    c = processes.directory / "c.db"
    memrepl.open(c, node_id="c").close()
    short = processes.directory / "short.key"
    short.write_text("0123456789abcdef0123456789abcde\n")  # 31 bytes and a newline
    done = memrepl_sync("--db", c, "--peer", "a=127.0.0.1:9", "--key-file", short)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"memrepl: error: the key file {str(short)!r} holds 31 bytes; a cluster key needs at "
        "least 32 random bytes (e.g. 'openssl rand -hex 32 > cluster.key')"
    ]


def test_sync_with_a_wrong_key_fails_cleanly(processes: Processes) -> None:
    a = processes.node("a").start()
    c = processes.directory / "c.db"
    memrepl.open(c, node_id="c").close()
    wrong = processes.directory / "wrong.key"
    wrong.write_text("not-the-cluster-key-at-all-000000\n")
    done = memrepl_sync(
        "--db", c, "--peer", a.address, "--key-file", wrong, "--connect-timeout", "1.5"
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith("memrepl: error: could not connect to 'a'")
    # In words to act on, as memrepl status says it (memrepl.mesh.advice).
    assert "the cluster credentials differ" in done.stderr.splitlines()[-1]
    assert "handshake" in a.log_text()
    assert a.stop() == 0
