"""One node process per store, and ``memrepl sync`` beside a running ``memrepl serve``.

Issue 12: two ``serve`` processes on one database fought over their peers ("duplicate: replaced by
another connection"), and ``memrepl sync`` next to a daemon claimed the same node id, displaced
the daemon's connection and ended ``unreachable``. Real processes on 127.0.0.1 here: the second
``serve`` exits 1 with one line naming the first; a SIGKILLed daemon does not block a restart;
``memrepl sync`` asks the running daemon to do the round.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import memrepl
from memrepl.errors import StoreInUseError
from memrepl.node.lock import LockInfo, NodeLock, holder, lock_path
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.items import LocalWrite

from .helpers import Processes, count, rows

#: No background round during the test: only what a command asks for happens.
QUIET = ("--sync-interval", "60", "--high-delay", "0.1", "--ack-timeout", "5")


def memrepl_cli(*args: str | Path, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memrepl", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    first = NodeLock(db)
    first.acquire(LockInfo(pid=os.getpid(), node_id="a", command="test", address="h:1"))
    assert holder(db) == LockInfo(pid=os.getpid(), node_id="a", command="test", address="h:1")
    with pytest.raises(StoreInUseError) as refused:
        NodeLock(db).acquire(LockInfo(pid=1, node_id="a", command="other"))
    assert (refused.value.pid, refused.value.address) == (os.getpid(), "h:1")
    assert f"pid {os.getpid()}, test, listening on h:1" in str(refused.value)
    first.release()
    assert holder(db) is None
    assert lock_path(db).exists()  # emptied, never deleted (see memrepl.node.lock)


def test_a_second_serve_on_one_store_refuses_naming_the_first(processes: Processes) -> None:
    a = processes.node("a", *QUIET).start()
    second = memrepl_cli(
        "serve", "--db", a.db, "--key-file", processes.directory / "cluster.key",
        "--listen", "127.0.0.1:0", timeout_s=30,
    )  # fmt: skip
    assert second.returncode == 1
    lines = second.stderr.splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith(f"memrepl: error: {a.db} is already in use by a running node")
    assert a.process is not None
    assert f"(pid {a.process.pid}, memrepl serve, listening on 127.0.0.1:{a.port})" in lines[0]
    assert a.running
    assert a.stop() == 0


def test_a_symlink_to_the_store_meets_the_same_lock(processes: Processes) -> None:
    """A store reached through a symbolic link is the same database (SQLite resolves the link
    for its -wal and -shm): a second serve, a clock rewind, a sync through it all meet the
    running daemon. The lock used to sit next to the path as given, so each ran beside it."""
    a = processes.node("a", *QUIET).start()
    link = processes.directory / "link.db"
    link.symlink_to(a.db)
    assert a.process is not None
    second = memrepl_cli(
        "serve", "--db", link, "--key-file", processes.directory / "cluster.key",
        "--listen", "127.0.0.1:0", timeout_s=30,
    )  # fmt: skip
    assert second.returncode == 1, second.stderr
    assert second.stderr.startswith(f"memrepl: error: {link} is already in use by a running node")
    assert f"(pid {a.process.pid}, memrepl serve, listening on 127.0.0.1:{a.port})" in (
        second.stderr
    )
    rewind = memrepl_cli("clock", "rewind", "--db", link)
    assert rewind.returncode == 1
    assert rewind.stderr.startswith(f"memrepl: error: {link} is already in use by a running node")
    # memrepl sync through the link finds the daemon and asks it: without a key file, only the
    # daemon could have tried to reach the peer (alone, sync would refuse for lack of one).
    done = memrepl_cli(
        "sync", "--db", link, "--peer", "ghost=127.0.0.1:9", "--connect-timeout", "1"
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith(
        "memrepl: error: could not connect to 'ghost' within 1 s"
    )
    assert a.running
    assert a.stop() == 0


def test_a_killed_serve_does_not_block_a_restart(processes: Processes) -> None:
    a = processes.node("a", *QUIET).start()
    b = processes.node("b", *QUIET).start("--peer", a.address)
    a.kill()
    assert lock_path(a.db).exists()
    a.start()  # the kernel dropped the lock with the process
    with memrepl.open(a.db, node_id="a") as store:
        store.working.add("after-restart", {"v": 1}, priority=memrepl.SyncPriority.URGENT)
    processes.wait(lambda: count(b.db, MemoryTier.WORKING) == 1, 20, "b gets a's write")
    assert "duplicate" not in a.log_text() + b.log_text()
    assert (a.stop(), b.stop()) == (0, 0)


def test_sync_beside_a_running_daemon_asks_it_to_do_the_round(processes: Processes) -> None:
    """The README's steps: serve a, serve b dialling a, then `memrepl sync --db a.db`."""
    a = processes.node("a", *QUIET).start()
    b = processes.node("b", *QUIET).start("--peer", a.address)
    processes.wait(lambda: "connected to 'b'" in a.log_text(), 20, "b connects to a")
    time.sleep(1.0)  # the catch-up rounds of the connection are over
    with memrepl.open(a.db, node_id="a") as store:
        store.episodic.write_many([LocalWrite.add(f"e{i}", {"i": i}) for i in range(300)])
    assert count(b.db, MemoryTier.EPISODIC) == 0  # NORMAL writes wait for a round
    key = processes.directory / "cluster.key"
    done = memrepl_cli("sync", "--db", a.db, "--peer", b.address, "--key-file", key, "--json")
    assert done.returncode == 0, done.stderr + processes.logs()
    lines = json.loads(done.stdout)
    results = {r["tier"]: r for r in lines if "tier" in r}
    assert sorted(results) == ["episodic", "semantic", "working"]
    # The daemon ran the anti-entropy check after its rounds, as memrepl sync alone would.
    (check,) = [line["antientropy"] for line in lines if "antientropy" in line]
    assert (check["peer_id"], check["error"], check["tiers_compared"]) == ("b", None, 3)
    assert (results["episodic"]["status"], results["episodic"]["items"]) == ("synced", 300)
    assert count(b.db, MemoryTier.EPISODIC) == 300
    # The daemon did it: one connection all along, nobody displaced.
    assert "duplicate" not in a.log_text() + b.log_text()
    assert a.log_text().count("connected to 'b'") == 1
    # Without a key file too: the daemon holds the credentials.
    again = memrepl_cli("sync", "--db", a.db, "--peer", b.address, "--tier", "episodic")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[2].split()[:2] == ["episodic", "up-to-date"]
    assert (a.stop(), b.stop()) == (0, 0)


def test_sync_beside_a_daemon_reports_a_peer_it_cannot_reach(processes: Processes) -> None:
    a = processes.node("a", *QUIET).start()
    done = memrepl_cli(
        "sync", "--db", a.db, "--peer", "ghost=127.0.0.1:9", "--connect-timeout", "1"
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith(
        "memrepl: error: could not connect to 'ghost' within 1 s"
    )
    assert a.running
    assert a.stop() == 0
    assert rows(a.db, "PRAGMA integrity_check") == [("ok",)]


def control_request(path: str, request: bytes) -> list[dict[str, object]]:
    """Send one raw line on a node's control socket; the answers until it closes."""
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(30)
        client.connect(path)
        client.sendall(request + b"\n")
        data = b""
        while chunk := client.recv(1 << 16):
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


#: Requests the control channel refuses, and what its error says.
BAD_REQUESTS = [
    (b'{"command": "sync", "peer": "a"}', "is this node's own id"),
    (b'{"command": "sync", "peer": "' + b"p" * 256 + b'"}', "1..255 bytes"),
    (
        b'{"command": "sync", "peer": "b", "connect_timeout_s": NaN}',
        "'connect_timeout_s' must be a positive number",
    ),
    (b'{"command": "sync", "peer": "b", "tiers": "working"}', "'tiers' must be a list"),
]


def test_the_control_channel_refuses_bad_requests(processes: Processes) -> None:
    """The daemon used to wait for a peer named like itself (or with a name no peer can have)
    until the timeout, accept a NaN timeout, and read a tier list given as a string letter by
    letter; each now gets an error saying what is wrong."""
    a = processes.node("a", *QUIET).start()
    info = holder(a.db)
    assert info is not None and info.control is not None
    for request_line, error in BAD_REQUESTS:
        answers = control_request(info.control, request_line)
        assert len(answers) == 1 and error in str(answers[0].get("error")), answers
    assert "Traceback" not in a.log_text()
    assert a.stop() == 0
