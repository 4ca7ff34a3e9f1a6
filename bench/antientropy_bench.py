"""Anti-entropy bench: comparing and repairing 1,000,000-item tiers, and what keeping digests costs.

Run: ``.venv/bin/python bench/antientropy_bench.py`` (a few minutes; ``--items 100000`` for a
quicker run). Figures, each measured in this run:

1. **Equal tiers.** Node A's episodic tier gets ``--items`` items (``write_many`` in
   transactions of 10,000: the storage functions, not one API call per item); node B's store is
   a copy of A's file. One anti-entropy check between them over a LocalMesh: CPU time of the
   whole check (both sides: it bounds each side's), wall time, round trips and bytes on the wire
   (digest queries and answers). Goals: under 100 ms of CPU per side, under 64 KB.
2. **Ten differing items.** Ten of B's rows are changed with ``sqlite3`` (4 contents edited
   without a new stamp, 3 deleted, 3 updated by A after the copy was taken); B's verification
   (a full read of its tier) and one check that finds and repairs them: round trips, digest
   bytes, repair batch bytes, items repaired, and that A and B then hold the same rows.
3. **Digest maintenance on the write paths.** ``write_many`` (100 items per transaction) and
   ``apply_sync_batch`` (sync_bench's 40/20/20/20 mix, 100-item batches), each with the digest
   upkeep and with it switched off (the hashing and the bucket upsert replaced by no-ops), in
   alternating rounds on fresh stores; best of ``--rounds``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import sync_bench

import memrepl
from memrepl.mesh import LocalMesh
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import digests, items
from memrepl.storage.items import LocalWrite
from memrepl.sync.antientropy import verify_digests
from memrepl.sync.manager import MemorySyncManager

TIER = MemoryTier.EPISODIC


def build(path: Path, count: int, node_id: str = "node-a") -> None:
    with memrepl.open(path, node_id=node_id) as store:
        memory = store.episodic
        for start in range(0, count, 10_000):
            memory.write_many(
                [
                    LocalWrite.add(f"item-{n:08d}", {"n": n, "episode_id": f"ep-{n // 100}"})
                    for n in range(start, min(count, start + 10_000))
                ]
            )
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def copy_as(source: Path, target: Path, node_id: str) -> None:
    shutil.copy(source, target)
    with sqlite3.connect(target) as conn:
        conn.execute("UPDATE node SET node_id = ?", (node_id,))


def pair(directory: Path) -> tuple[LocalMesh, dict[str, memrepl.Store], MemorySyncManager]:
    hub = LocalMesh()
    stores = {}
    managers = {}
    for node_id in ("node-a", "node-b"):
        store = memrepl.open(directory / f"{node_id}.db", node_id=node_id)
        manager = MemorySyncManager(node_id, hub.endpoint(node_id), ack_timeout_s=300)
        manager.register_memory_tier(TIER, store.episodic)
        stores[node_id], managers[node_id] = store, manager
    return hub, stores, managers["node-a"]


def rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT item_id, content, whole_ts, whole_origin, whole_deleted, field_clocks, "
            "causal_context FROM episodic_items ORDER BY item_id"
        ).fetchall()


async def timed_check(hub: LocalMesh, manager: MemorySyncManager) -> tuple[float, float, object]:
    cpu, wall = time.process_time(), time.perf_counter()
    result = await manager.check_peer("node-b")
    await hub.settle()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def bench_checks(directory: Path, count: int) -> None:
    started = time.perf_counter()
    build(directory / "node-a.db", count)
    copy_as(directory / "node-a.db", directory / "node-b.db", "node-b")
    print(f"fixture: {count:,} episodic items in {time.perf_counter() - started:.1f} s")

    hub, stores, manager = pair(directory)
    cpu, wall, result = asyncio.run(timed_check(hub, manager))
    print(
        f"equal tiers: CPU {cpu * 1000:.1f} ms (both sides together; goal < 100 ms per side), "
        f"wall {wall * 1000:.1f} ms, {result.round_trips} round trip(s), "  # type: ignore[attr-defined]
        f"{result.digest_bytes:,} bytes on the wire (goal < 64 KB)"  # type: ignore[attr-defined]
    )

    a, b = stores["node-a"], stores["node-b"]
    for n in (11, 222_222 % count, 333_333 % count):
        a.episodic.update(f"item-{n:08d}", {"n": -n, "updated": True})
    b_db = directory / "node-b.db"
    with sqlite3.connect(b_db) as conn:
        for n in (1, 100_001 % count, 200_002 % count, 300_003 % count):
            conn.execute(
                "UPDATE episodic_items SET content = ? WHERE item_id = ?",
                (f'{{"n": {n}, "edited": true}}', f"item-{n:08d}"),
            )
        for n in (5, 500_005 % count, 900_009 % count):
            conn.execute("DELETE FROM episodic_items WHERE item_id = ?", (f"item-{n:08d}",))
    cpu_verify, wall_verify = time.process_time(), time.perf_counter()
    corrected = verify_digests(b.episodic)
    cpu_verify, wall_verify = (
        time.process_time() - cpu_verify,
        time.perf_counter() - wall_verify,
    )
    print(
        f"verification of B ({count:,} rows): {corrected} buckets corrected, CPU "
        f"{cpu_verify:.2f} s, wall {wall_verify:.2f} s"
    )
    cpu, wall, result = asyncio.run(timed_check(hub, manager))
    r = result
    same = rows(directory / "node-a.db") == rows(b_db)
    print(
        f"10 differing items: {r.items_differing} found, {r.repaired} repaired, "  # type: ignore[attr-defined]
        f"{r.round_trips} digest round trips + {r.items_sent} sent / {r.items_fetched} fetched "  # type: ignore[attr-defined]
        f"in repair batches; {r.digest_bytes:,} digest bytes, {r.batch_bytes:,} batch bytes; "  # type: ignore[attr-defined]
        f"CPU {cpu:.2f} s, wall {wall:.2f} s; identical after: {same}"
    )
    for store in stores.values():
        store.close()


@contextmanager
def digests_off() -> Iterator[None]:
    """The write paths without digest upkeep: no hashing, no bucket upsert."""
    saved = (items.tuple_hash, digests.item_hash, digests.record_changes)
    items.tuple_hash = lambda row: 0  # type: ignore[assignment]
    digests.item_hash = lambda item: 0  # type: ignore[assignment]
    digests.record_changes = lambda conn, tier, changes: None  # type: ignore[assignment]
    try:
        yield
    finally:
        items.tuple_hash, digests.item_hash, digests.record_changes = saved  # type: ignore[assignment]


def best_of(
    rounds: int, on: Callable[[int], float], off: Callable[[int], float]
) -> tuple[float, float]:
    with_digests, without = [], []
    for n in range(rounds):
        with_digests.append(on(n))
        with digests_off():
            without.append(off(n))
    return min(with_digests), min(without)


def bench_write_paths(directory: Path, count: int, rounds: int) -> None:
    writes = [
        [
            LocalWrite.add(f"w{n:07d}", {"n": n, "text": "memory agent task"})
            for n in range(s, s + 100)
        ]
        for s in range(0, count, 100)
    ]

    def write_many(n: int) -> float:
        path = directory / f"w{n}-{time.perf_counter_ns()}.db"
        with memrepl.open(path, node_id="node-a") as store:
            start = time.perf_counter()
            for chunk in writes:
                store.episodic.write_many(chunk)
            return time.perf_counter() - start

    on, off = best_of(rounds, write_many, write_many)
    print(
        f"write_many {count:,} items, 100 per transaction: {count / on:,.0f} items/s with "
        f"digests, {count / off:,.0f} without ({on / off - 1:+.1%} time)"
    )

    workload = sync_bench.Workload(count, random.Random(7))
    gc.freeze()
    pre = directory / "pre.db"
    sync_bench.build_pre_state(pre, workload)

    def apply(n: int) -> float:
        path = directory / f"a{n}-{time.perf_counter_ns()}.db"
        shutil.copy(pre, path)
        return sync_bench.run_memrepl(path, workload)[0]

    on, off = best_of(rounds, apply, apply)
    print(
        f"apply_sync_batch {workload.total:,} items (sync_bench mix): {workload.total / on:,.0f} "
        f"items/s with digests, {workload.total / off:,.0f} without ({on / off - 1:+.1%} time)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--write-items", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="memrepl-ae-bench-") as tmp:
        directory = Path(tmp)
        bench_write_paths(directory, args.write_items, args.rounds)
        bench_checks(directory, args.items)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
