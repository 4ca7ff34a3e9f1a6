"""End to end: two ``memrepl serve`` processes over TCP with authentication.

Run: ``.venv/bin/python bench/e2e_bench.py`` (``make bench`` runs every bench script); it runs
both authentication modes in turn, or the one ``--mode`` names:

- ``shared-key``: the HMAC handshake and per-frame seals (a MAC after the header, an HMAC after
  the payload), no TLS;
- ``certificate``: mutual TLS 1.3 with node certificates from a CA made for the run (``memrepl
  ca create`` / ``memrepl cert issue``), no frame seals (TLS protects the frames).

1. **Throughput.** Node A and node B run as child processes on 127.0.0.1. This process writes
   100,000 episodic items (JSON content of about 150 bytes) into A's store file in ONE
   transaction, marked HIGH with ``--high-delay 0`` so A starts its round at once, and times
   from that commit until B's durable inbound cursor for A reaches A's last change: every item
   read from A's table, packed, sent, authenticated, unpacked, applied in B's table and
   acknowledged. Reported as items/s.

   Also reported: the CPU time (user + system, from ``/proc``) the two node processes spent
   during the transfer, per item. On a shared machine it moves far less with the load than the
   wall-clock rate, so it is the figure to compare between builds and modes.

   The baseline, measured in the same run: the same items cut into the same batches
   (``create_delta_batch`` on A's store, ``max_batch_items`` as the nodes use), applied
   in-process with ``apply_sync_batch`` to a fresh store -- the database work alone, without
   reading, packing, network or acknowledgements. Both stores use the same SQLite settings
   (``synchronous = FULL``: a durable commit per batch). Goal: a ratio of at least 0.5.

2. **URGENT latency.** 200 times, this process writes one URGENT item into A's store file and
   polls B's store file until the item is there. A sees the commit of another process by its
   poll (``--poll-interval``, 20 ms by default) and pushes it at once; the figure is the time from
   the commit returning to the item being readable on B. Goal: a median under 50 ms.

3. **URGENT latency under a flood.** A third node F dials B and floods it with 1-item batches,
   64 in flight at a time (each new one as soon as one is answered), from a thread of this
   process. While B applies them, the URGENT writes of step 2 are made again on A
   (``--flood-writes`` of them). The figure is the same time from A's commit to the item being
   readable on B; its baseline is step 2's, measured in the same run without the flood. Goal: a
   p99 under 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import memrepl
from memrepl.mesh import TcpMesh, TcpMeshConfig
from memrepl.mesh.identity import NodeCertificate
from memrepl.protocol.batch import MemorySyncBatch
from memrepl.protocol.enums import (
    MemoryTier,
    MessageTypes,
    SyncFlags,
    SyncOperation,
    SyncPriority,
)
from memrepl.protocol.item import MemorySyncItem
from memrepl.storage.items import LocalWrite, max_modified_at
from memrepl.storage.migrate import REPLICATION_REVISION
from memrepl.sync.manager import MemorySyncManager

WORDS = ("memory", "agent", "task", "user", "context", "recall", "plan", "goal", "note", "fact")
KEY = "bench-cluster-key-0123456789abcdef"


MODES = ("shared-key", "certificate")
#: A and B, and F, which floods B in step 3.
NODES = ("a", "b", "f")
#: Batches F keeps unanswered.
FLOOD_IN_FLIGHT = 64


def credentials(directory: Path, mode: str) -> dict[str, list[str]]:
    """Per node id, the serve flags that authenticate it in ``mode`` (files made here)."""
    if mode == "shared-key":
        (directory / "cluster.key").write_text(KEY + "\n")
        return {node: ["--key-file", str(directory / "cluster.key")] for node in NODES}
    memrepl_cli = [sys.executable, "-m", "memrepl"]
    ca = str(directory / "ca")
    subprocess.run(
        [*memrepl_cli, "ca", "create", "--out", ca], check=True, stdout=subprocess.DEVNULL
    )
    flags = {}
    for node in NODES:
        out = directory / f"certs-{node}"
        subprocess.run(
            [*memrepl_cli, "cert", "issue", "--ca", ca, "--node-id", node, "--out", str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        flags[node] = ["--certs-dir", str(out)]
    return flags


def serve(
    directory: Path, node_id: str, auth: list[str], *extra: str
) -> tuple[subprocess.Popen[bytes], int]:
    port_file = directory / f"{node_id}.port"
    log = (directory / f"{node_id}.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "memrepl", "serve",
            "--db", str(directory / f"{node_id}.db"), "--node-id", node_id,
            *auth,
            "--listen", "127.0.0.1:0", "--port-file", str(port_file),
            "--high-delay", "0", "--log-level", "WARNING",
            *extra,
        ],
        stdout=log,
        stderr=log,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + 20
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{node_id} did not start: see {directory / node_id}.log")
        time.sleep(0.02)
    return process, int(port_file.read_text())


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def contents(count: int, rng: random.Random) -> list[dict[str, object]]:
    return [
        {
            "content": " ".join(rng.choices(WORDS, k=rng.randint(6, 18))),
            "importance": round(rng.random(), 3),
            "tags": rng.sample(WORDS, 2),
            "episode_id": f"episode-{n // 100}",
            "occurred_at_ns": 1_700_000_000_000_000_000 + n,
        }
        for n in range(count)
    ]


def readonly(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10, isolation_level=None)


def inbound_cursor(conn: sqlite3.Connection, tier: MemoryTier, peer: str) -> int:
    row = conn.execute(
        "SELECT applied_cursor FROM inbound_cursors WHERE tier = ? AND peer_id = ?",
        (int(tier), peer),
    ).fetchone()
    return int(row[0]) if row else 0


def throughput(directory: Path, count: int, rng: random.Random) -> tuple[float, int]:
    """Seconds from A's commit until B holds every item; and A's last change stamp."""
    tier = MemoryTier.EPISODIC
    writes = [
        LocalWrite.add(f"item-{n:07d}", content, SyncPriority.HIGH)
        for n, content in enumerate(contents(count, rng))
    ]
    with memrepl.open(directory / "a.db", node_id="a") as store:
        store.episodic.write_many(writes)
        started = time.perf_counter()
        with store.read() as conn:
            last = max_modified_at(conn, store.episodic.spec)
    b = readonly(directory / "b.db")
    try:
        while inbound_cursor(b, tier, "a") < last:
            if time.perf_counter() - started > 600:
                raise RuntimeError("B did not catch up within 600 s")
            time.sleep(0.005)
        took = time.perf_counter() - started
        held = b.execute("SELECT count(*) FROM episodic_items").fetchone()[0]
    finally:
        b.close()
    if held != count:
        raise RuntimeError(f"B holds {held} items, not {count}")
    return took, last


def baseline(directory: Path, max_batch_items: int) -> tuple[float, int]:
    """Seconds to apply A's episodic tier, in the nodes' batches, in-process; and item count."""
    batches: list[MemorySyncBatch] = []
    with memrepl.open(directory / "a.db", node_id="a") as source:
        manager = MemorySyncManager("a", max_batch_items=max_batch_items)
        manager.register_memory_tier(MemoryTier.EPISODIC, source.episodic)
        since = 0
        while True:
            batch = manager.create_delta_batch(MemoryTier.EPISODIC, "z", since_timestamp=since)
            if not batch.items:
                break
            batches.append(batch)
            assert batch.cursor is not None
            since = batch.cursor
    with memrepl.open(directory / "z.db", node_id="z") as target:
        manager = MemorySyncManager("z", max_batch_items=max_batch_items)
        manager.register_memory_tier(MemoryTier.EPISODIC, target.episodic)
        started = time.perf_counter()
        for batch in batches:
            manager.apply_sync_batch(batch)
        took = time.perf_counter() - started
    return took, sum(len(batch.items) for batch in batches)


def urgent_latency(
    directory: Path, writes: int, rng: random.Random, *, prefix: str = "urgent"
) -> list[float]:
    """Seconds from an URGENT commit on A to the item being readable on B, per write."""
    found: list[float] = []
    b = readonly(directory / "b.db")
    try:
        with memrepl.open(directory / "a.db", node_id="a") as store:
            for n in range(writes):
                item_id = f"{prefix}-{n:04d}"
                store.working.add(item_id, {"n": n}, priority=SyncPriority.URGENT)
                started = time.perf_counter()
                while not b.execute(
                    "SELECT 1 FROM working_items WHERE item_id = ?", (item_id,)
                ).fetchone():
                    if time.perf_counter() - started > 10:
                        raise RuntimeError(f"{item_id} did not reach B within 10 s")
                    time.sleep(0.0002)
                found.append(time.perf_counter() - started)
                # Writes at random moments, not in step with A's poll.
                time.sleep(rng.uniform(0.005, 0.03))
    finally:
        b.close()
    return found


class Flooder:
    """Node F: a key holder (or the holder of F's certificate) that dials B and sends it 1-item
    batches without waiting for their ACKs, :data:`FLOOD_IN_FLIGHT` at a time -- in a thread of
    this process, with its own event loop."""

    def __init__(self, directory: Path, mode: str, b_port: int) -> None:
        self.directory = directory
        self.mode = mode
        self.b_port = b_port
        self.acked = 0
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="flooder", daemon=True)

    def __enter__(self) -> Flooder:
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError(f"the flooder did not connect to B: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._flood())
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    async def _flood(self) -> None:
        if self.mode == "shared-key":
            key = (self.directory / "cluster.key").read_bytes()
            credentials: dict[str, Any] = {"shared_key": key}
        else:
            certs = self.directory / "certs-f"
            credentials = {
                "certificate": NodeCertificate.load(
                    certs / "node.crt", certs / "node.key", certs / "ca.crt"
                )
            }
        config = TcpMeshConfig(max_unacked_batches=FLOOD_IN_FLIGHT)
        mesh = TcpMesh(
            "f",
            schema_revision=REPLICATION_REVISION,
            peers={"b": ("127.0.0.1", self.b_port)},
            config=config,
            **credentials,
        )
        slots = asyncio.Semaphore(FLOOD_IN_FLIGHT)

        def answered(data: bytes, peer_id: str) -> None:
            self.acked += 1
            slots.release()

        mesh.register_handler(MessageTypes.ACK, answered)
        mesh.register_handler(MessageTypes.NACK, answered)
        # B's own rounds to F go unanswered: F holds no store.
        mesh.register_handler(MessageTypes.VECTOR_SYNC, lambda data, peer_id: None)
        async with mesh:
            await mesh.wait_for_peer("b", 30)
            self.ready.set()
            n = 0
            while not self.stop.is_set():
                await slots.acquire()
                item = MemorySyncItem(
                    item_id=f"flood-{n:08d}",
                    timestamp_ns=time.time_ns(),
                    tier=MemoryTier.EPISODIC,
                    operation=SyncOperation.INSERT,
                    payload=b'{"flood": %d}' % n,
                )
                batch = MemorySyncBatch(
                    batch_id=f"flood-{n}",
                    source_node="f",
                    target_node="b",
                    tier=MemoryTier.EPISODIC,
                    items=[item],
                    flags=SyncFlags.DELTA_ONLY | SyncFlags.REQUIRES_ACK,
                )
                mesh.send("b", MessageTypes.VECTOR_SYNC, batch.pack())
                n += 1


def urgent_under_flood(
    directory: Path, mode: str, b_port: int, args: argparse.Namespace, rng: random.Random
) -> tuple[list[float], int]:
    """URGENT latencies A -> B while F floods B with 1-item batches; and how many of F's batches
    B acknowledged meanwhile."""
    with Flooder(directory, mode, b_port) as flooder:
        time.sleep(1.0)  # the flood is on
        before = flooder.acked
        found = urgent_latency(directory, args.flood_writes, rng, prefix="flooded")
        applied = flooder.acked - before
    if flooder.error is not None:
        raise RuntimeError(f"the flooder failed: {flooder.error!r}")
    return found, applied


def percentiles(latencies: list[float]) -> tuple[float, float, float]:
    """Median, p99 and max, in ms."""
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return statistics.median(ordered) * 1000, p99 * 1000, ordered[-1] * 1000


def throughput_step(
    directory: Path,
    args: argparse.Namespace,
    mode: str,
    children: list[subprocess.Popen[bytes]],
    rng: random.Random,
) -> bool:
    """Step 1: print the figures; whether the ratio met its goal."""
    print(f"e2e [{mode}]: {args.items:,} items A -> B over TCP")
    cpu_before = [cpu_seconds(child.pid) for child in children]
    took, _ = throughput(directory, args.items, rng)
    cpu = [
        cpu_seconds(child.pid) - before for child, before in zip(children, cpu_before, strict=True)
    ]
    e2e_rate = args.items / took
    base_took, base_items = baseline(directory, args.max_batch_items)
    base_rate = base_items / base_took
    ratio = e2e_rate / base_rate
    print(f"  end to end          {e2e_rate:>10,.0f} items/s  ({took:.2f} s)")
    print(
        f"  node CPU            {sum(cpu) / args.items * 1e6:>10.1f} us/item  "
        f"(A {cpu[0] / args.items * 1e6:.1f}, B {cpu[1] / args.items * 1e6:.1f})"
    )
    print(f"  apply_sync_batch    {base_rate:>10,.0f} items/s  ({base_took:.2f} s, in-process)")
    print(
        f"  ratio               {ratio:>10.2f}          goal >= 0.5  "
        + ("ok" if ratio >= 0.5 else "MISSED")
    )
    return bool(ratio >= 0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--urgent-writes", type=int, default=200)
    parser.add_argument("--flood-writes", type=int, default=200)
    parser.add_argument(
        "--only-flood", action="store_true", help="skip the throughput and idle latency steps"
    )
    parser.add_argument("--max-batch-items", type=int, default=100)
    parser.add_argument("--mode", choices=MODES, help="only this authentication mode")
    parser.add_argument("--keep", action="store_true", help="keep the bench directory")
    args = parser.parse_args()
    codes = [run(args, mode) for mode in ([args.mode] if args.mode else MODES)]
    return max(codes)


def run(args: argparse.Namespace, mode: str) -> int:
    rng = random.Random(7)
    directory = Path(tempfile.mkdtemp(prefix="memrepl-e2e-"))
    auth = credentials(directory, mode)
    flags = ("--max-batch-items", str(args.max_batch_items))
    children: list[subprocess.Popen[bytes]] = []
    try:
        a, port = serve(directory, "a", auth["a"], *flags)
        children.append(a)
        b, port_b = serve(directory, "b", auth["b"], *flags, "--peer", f"a=127.0.0.1:{port}")
        children.append(b)
        time.sleep(1.0)  # connected, and the empty tiers' snapshot requests answered

        ok = True
        if not args.only_flood:
            ok = throughput_step(directory, args, mode, children, rng)
        idle = urgent_latency(directory, args.urgent_writes, rng)
        median_ms, p99_ms, max_ms = percentiles(idle)
        print(f"e2e [{mode}]: URGENT write on A -> readable on B, {len(idle)} writes")
        print(
            f"  median {median_ms:6.1f} ms   goal < 50 ms  "
            + ("ok" if median_ms < 50 else "MISSED")
        )
        print(f"  p99    {p99_ms:6.1f} ms   max {max_ms:.1f} ms")
        ok = ok and median_ms < 50
        flooded, applied = urgent_under_flood(directory, mode, port_b, args, rng)
        f_median, f_p99, f_max = percentiles(flooded)
        print(
            f"e2e [{mode}]: the same, while F floods B with 1-item batches "
            f"({applied:,} applied meanwhile), {len(flooded)} writes"
        )
        print(f"  median {f_median:6.1f} ms   (idle {median_ms:.1f} ms)")
        print(
            f"  p99    {f_p99:6.1f} ms   (idle {p99_ms:.1f} ms)   goal < 100 ms  "
            + ("ok" if f_p99 < 100 else "MISSED")
        )
        print(f"  max    {f_max:6.1f} ms   (idle {max_ms:.1f} ms)")
        ok = ok and f_p99 < 100
        for child in children:
            child.send_signal(signal.SIGTERM)
        codes = [child.wait(30) for child in children]
        if codes != [0, 0]:
            raise RuntimeError(f"the nodes exited with {codes}")
        return 0 if ok else 1
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(10)
        if args.keep:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
