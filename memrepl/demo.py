"""``make demo`` (``python -m memrepl.demo``): three nodes as separate processes, replicating.

What it does, in ``./demo-run`` (wiped first):

1. makes a cluster CA and a certificate per node (what ``memrepl ca create`` and ``memrepl cert
   issue`` do: each node proves its own node id, README "Security: the trust model") and starts
   three ``memrepl serve --certs-dir`` processes on 127.0.0.1 (port 0; each reports its port in
   a port file; node-b dials node-a, node-c dials both);
2. writes to all three tiers of each node's store -- from this process, through
   ``memrepl.open`` on the same files (a second process on a store is supported) -- including
   the same item ids on node-a and node-b at the same moment: concurrent writes, so conflicts;
3. shows an URGENT write crossing from node-a to node-c without waiting for a round;
4. waits until the three stores hold the same state (a digest per tier), prints the counts,
   and shows the conflict log with ``memrepl sql`` -- the command printed whole, so it can be
   copied and run again;
5. stops the nodes with SIGTERM, checks they exited cleanly, and says what to try next on the
   stores it leaves in ``./demo-run``.

The rule that keeps it right: **it leaves nothing running** -- every child is killed in a
``finally``, whatever happened -- and it ends by itself (a timeout bounds every wait).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import memrepl
from memrepl.mesh import certs
from memrepl.protocol.enums import MemoryTier, SyncPriority
from memrepl.storage.items import LocalWrite

DEMO_DIR = Path("demo-run")
NODES = ("node-a", "node-b", "node-c")
#: Short rounds, so that the demo is quick (a real cluster would use the 30 s default).
SERVE_FLAGS = ("--sync-interval", "1", "--high-delay", "0.2")
CONVERGE_TIMEOUT_S = 20.0
START_TIMEOUT_S = 15.0
TABLES = {tier: f"{tier.name.lower()}_items" for tier in MemoryTier}

CONFLICTS_SQL = (
    "SELECT tier_name(tier) AS tier, item_id, winner_origin AS winner, loser_origin AS loser, "
    "rule, resolved_content AS kept FROM conflicts ORDER BY tier, item_id"
)


def next_steps(directory: Path) -> list[str]:
    """What to try once the demo is done, on the stores it leaves behind."""
    a, b, c = (shlex.quote(str(directory / f"{node}.db")) for node in NODES)
    return [
        "what to try next (the stores stay; the commands are in .venv):",
        "  source .venv/bin/activate                   # puts `memrepl` on your PATH",
        f"  memrepl status --db {a}          # items, peers, how far each is behind",
        f"  memrepl conflicts --db {b}       # who lost which write, and what it said",
        f"  memrepl list episodic --limit 5 --db {c}",
        f"  memrepl get working alarm --db {c}",
        f"  memrepl concept add paris '{{\"population\": 2100000}}' --db {a}",
        f"  memrepl graph export --format node-link --db {a}",
        '  then run nodes of your own: README.md, "Running nodes over TCP"',
    ]


@dataclass
class Child:
    """One ``memrepl serve`` process."""

    node_id: str
    db: Path
    process: subprocess.Popen[bytes]
    port: int = 0


def say(text: str) -> None:
    print(text, flush=True)


def start(node_id: str, directory: Path, peers: list[Child]) -> Child:
    db = directory / f"{node_id}.db"
    port_file = directory / f"{node_id}.port"
    command = [
        sys.executable, "-m", "memrepl", "serve",
        "--db", str(db), "--node-id", node_id,
        "--certs-dir", str(directory / f"certs-{node_id}"),
        "--listen", "127.0.0.1:0", "--port-file", str(port_file),
        *SERVE_FLAGS,
    ]  # fmt: skip
    for peer in peers:
        command += ["--peer", f"{peer.node_id}=127.0.0.1:{peer.port}"]
    with (directory / f"{node_id}.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)
    child = Child(node_id, db, process)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{node_id} did not start; see {directory / (node_id + '.log')}")
        time.sleep(0.02)
    child.port = int(port_file.read_text())
    say(f"  started {node_id} (pid {process.pid}) on 127.0.0.1:{child.port}")
    return child


def write_node(child: Child, meet: threading.Barrier) -> None:
    """Each tier gets its own items; node-a and node-b also write the same ids at once."""
    name = child.node_id
    with memrepl.open(child.db, node_id=name) as store:
        store.working.write_many(
            [LocalWrite.add(f"{name}-task-{i}", {"task": i, "by": name}) for i in range(5)]
        )
        store.episodic.write_many(
            [
                LocalWrite.add(
                    f"{name}-ev-{i}",
                    {"episode_id": f"{name}-session", "occurred_at_ns": i, "said": f"hello {i}"},
                    SyncPriority.HIGH if i == 0 else SyncPriority.NORMAL,
                )
                for i in range(20)
            ]
        )
        store.semantic.add(f"{name}-self", {"kind": "concept", "name": name})
        if name == "node-c":
            store.semantic.add("cluster", {"kind": "concept", "name": "the cluster"})
        store.semantic.add(
            f"{name}-in",
            {"kind": "relation", "source": f"{name}-self", "target": "cluster", "relation": "in"},
        )
        store.episodic.delete(f"{name}-ev-19")
        if name in ("node-a", "node-b"):
            meet.wait(timeout=10)
            # The same ids, on two nodes at the same moment.
            store.working.merge("shared-goal", {"owner": name, f"note-{name}": "mine"})
            store.episodic.merge("shared-event", {"seen_by": name})
            store.semantic.merge("shared-concept", {"kind": "concept", "label": f"by {name}"})


def digest(db: Path, tier: MemoryTier) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        found = [
            (item_id, deleted, json.dumps(json.loads(content), sort_keys=True), ts, origin)
            for item_id, deleted, content, ts, origin in conn.execute(
                "SELECT item_id, deleted, content, version_ts, version_origin "
                f"FROM {TABLES[tier]} ORDER BY item_id"
            )
        ]
    finally:
        conn.close()
    return hashlib.sha256(repr(found).encode()).hexdigest()


def live_count(db: Path, tier: MemoryTier) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(
            conn.execute(f"SELECT count(*) FROM {TABLES[tier]} WHERE NOT deleted").fetchone()[0]
        )
    finally:
        conn.close()


def wait_converged(children: list[Child]) -> float:
    started = time.monotonic()
    while True:
        if all(len({digest(c.db, tier) for c in children}) == 1 for tier in MemoryTier):
            return time.monotonic() - started
        if time.monotonic() - started > CONVERGE_TIMEOUT_S:
            raise RuntimeError(f"the nodes did not converge within {CONVERGE_TIMEOUT_S} s")
        time.sleep(0.05)


def urgent_crossing(a: Child, c: Child) -> float:
    """Write an URGENT item on node-a; seconds until node-c's store has it."""
    with memrepl.open(a.db, node_id=a.node_id) as store:
        store.working.add("alarm", {"level": "red"}, priority=SyncPriority.URGENT)
    started = time.monotonic()
    while time.monotonic() - started < 5:
        conn = sqlite3.connect(f"file:{c.db}?mode=ro", uri=True, timeout=10)
        try:
            if conn.execute("SELECT 1 FROM working_items WHERE item_id = 'alarm'").fetchone():
                return time.monotonic() - started
        finally:
            conn.close()
        time.sleep(0.002)
    raise RuntimeError("the URGENT write did not reach node-c within 5 s")


def stop(children: list[Child]) -> None:
    for child in children:
        child.process.send_signal(signal.SIGTERM)
    for child in children:
        code = child.process.wait(15)
        say(f"  {child.node_id} exited with {code}" + ("" if code == 0 else "  <-- unexpected"))
        if code != 0:
            raise RuntimeError(f"{child.node_id} exited with {code}")


def run(directory: Path = DEMO_DIR) -> None:
    """The demo; raises RuntimeError if a step fails (the caller prints it)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    certs.create_ca(directory / "ca")
    for node_id in NODES:
        certs.issue_node(directory / "ca", node_id, directory / f"certs-{node_id}")
    children: list[Child] = []
    try:
        say(f"1. three nodes, each its own process, store and node certificate, in {directory}/")
        for node_id in NODES:
            children.append(start(node_id, directory, list(children)))
        say("2. writing to every tier of every store (node-a and node-b: the same ids at once)")
        meet = threading.Barrier(2)
        writers = [threading.Thread(target=write_node, args=(c, meet)) for c in children]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        took = urgent_crossing(children[0], children[2])
        say(f"3. an URGENT write on node-a was on node-c after {took * 1000:.0f} ms")
        converged = wait_converged(children)
        say(f"4. converged {converged:.1f} s after the writes; each store now holds:")
        for child in children:
            counts = ", ".join(
                f"{live_count(child.db, tier)} {tier.name.lower()}" for tier in MemoryTier
            )
            say(f"     {child.node_id}: {counts}   (digests equal on every tier)")
        say("5. the conflicts, from SQL:")
        for child in children:
            shown = subprocess.run(
                [sys.executable, "-m", "memrepl", "sql", CONFLICTS_SQL, "--db", str(child.db)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            say(f"   $ memrepl sql {shlex.quote(CONFLICTS_SQL)} --db {shlex.quote(str(child.db))}")
            say("\n".join("     " + line for line in shown.stdout.splitlines()) or "     (none)")
        say("6. stopping the nodes with SIGTERM")
        stop(children)
        say(f"done: logs and stores are in {directory}/")
        say("")
        for line in next_steps(directory):
            say(line)
    finally:
        for child in children:
            if child.process.poll() is None:
                child.process.kill()
                child.process.wait(10)


def main() -> int:
    try:
        run()
    except (RuntimeError, OSError, memrepl.MemreplError) as exc:
        print(f"memrepl demo: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
