"""Storage bench: memrepl's tier API against raw ``sqlite3`` doing the same rows in the same run.

Run: ``.venv/bin/python bench/storage_bench.py`` (a few minutes; ``--quick`` for a smoke run,
``--big N`` to change the large tier's size). Every figure is a ratio to raw sqlite3 measured in
this run, on the same table (a memrepl-created ``working_items``), with the same pragmas (WAL,
``synchronous`` FULL, then NORMAL); the write figures come from each side's fastest of 10
alternating rounds:

- single-item ``add``, one transaction each, vs raw ``BEGIN; INSERT; COMMIT`` -- goal >= 0.5
  (and, for scale, vs raw sqlite3 running the same statements an add runs, clock row included);
- ``write_many`` of 100 items per transaction vs raw ``executemany`` of 100 rows -- goal >= 0.5;
- ``get_modified_since`` of the latest 100 changes in tiers of 10,000 and 1,000,000 items: the
  ratio between the two sizes, goal < 1.3 (an index range scan does not grow with the tier).

The raw side does the work a raw user must do for the same rows (encode the JSON, bind every
column); memrepl additionally validates, reads the row it replaces, stamps from the persisted
clock and saves the clock, all inside its BEGIN IMMEDIATE transaction.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from memrepl.storage import LocalWrite
from memrepl.storage import open as open_store

COLUMNS = (
    "item_id, content, deleted, version_ts, version_origin, whole_ts, whole_origin, "
    "whole_deleted, field_clocks, causal_context, priority, modified_at, received_from, "
    "created_at_ns, access_count, last_accessed_ns, pinned, expires_at_ns"
)
INSERT = f"INSERT INTO working_items ({COLUMNS}) VALUES ({', '.join('?' * 18)})"
NODE = "node-bench"


def raw_row(item_id: str, content: dict[str, object], stamp: int) -> tuple[object, ...]:
    """A valid working_items row, as memrepl would write it for a fresh add."""
    return (
        item_id,
        json.dumps(content),
        0,
        stamp,
        NODE,
        stamp,
        NODE,
        0,
        "{}",
        json.dumps({NODE: stamp}, separators=(",", ":")),
        2,
        stamp,
        None,
        stamp,
        0,
        None,
        0,
        None,
    )


def raw_connection(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def fresh_db(directory: Path, name: str) -> Path:
    """A new database file with memrepl's schema (so raw and memrepl use the same table)."""
    path = directory / name
    open_store(path, node_id=NODE).close()
    return path


def content(n: int) -> dict[str, object]:
    return {"n": n, "text": f"memory number {n}", "tags": ["bench", "storage"]}


def alternating(
    rounds: int, per_round: int, ours: Callable[[int], None], raw: Callable[[int], None]
) -> tuple[float, float]:
    """Items per second of ``ours`` and ``raw``, each from its fastest round, run in alternating
    rounds. Alternating: the disk's mood varies over a run (fsync times drift), so both sides see
    the same conditions. Fastest: a shared machine only ever adds time, so the fastest round is
    the best estimate of each side's own cost (timeit's rule), for both sides alike."""
    spent: dict[str, list[float]] = {"ours": [], "raw": []}
    for round_ in range(rounds):
        for name, action in (("raw", raw), ("ours", ours)):
            start = time.perf_counter()
            action(round_)
            spent[name].append(time.perf_counter() - start)
    return per_round / min(spent["ours"]), per_round / min(spent["raw"])


def bench_single(directory: Path, synchronous: str, count: int) -> tuple[float, float]:
    """One item per transaction: ``Tier.add`` vs ``BEGIN; INSERT; COMMIT``."""
    rounds, per_round = 10, count // 10
    conn = raw_connection(fresh_db(directory, f"single-raw-{synchronous}.db"), synchronous)
    store = open_store(
        directory / f"single-memrepl-{synchronous}.db", node_id=NODE, synchronous=synchronous
    )

    def raw(round_: int) -> None:
        for n in range(round_ * per_round, (round_ + 1) * per_round):
            conn.execute("BEGIN")
            conn.execute(INSERT, raw_row(f"item-{n}", content(n), time.time_ns()))
            conn.execute("COMMIT")

    def ours(round_: int) -> None:
        for n in range(round_ * per_round, (round_ + 1) * per_round):
            store.working.add(f"item-{n}", content(n))

    try:
        return alternating(rounds, per_round, ours, raw)
    finally:
        conn.close()
        store.close()


def bench_single_same_statements(directory: Path, synchronous: str, count: int) -> float:
    """Raw sqlite3 running the statements an ``add`` transaction runs: BEGIN IMMEDIATE, read
    the clock, read the row, insert, save the clock, COMMIT. Items per second."""
    conn = raw_connection(fresh_db(directory, f"single-same-{synchronous}.db"), synchronous)
    start = time.perf_counter()
    for n in range(count):
        conn.execute("BEGIN IMMEDIATE")
        (last,) = conn.execute("SELECT clock_last_ns FROM node WHERE id = 1").fetchone()
        conn.execute("SELECT * FROM working_items WHERE item_id = ?", (f"item-{n}",)).fetchall()
        stamp = max(time.time_ns(), last + 1)
        conn.execute(INSERT, raw_row(f"item-{n}", content(n), stamp))
        conn.execute("UPDATE node SET clock_last_ns = ? WHERE id = 1", (stamp,))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return count / elapsed


def bench_batch(
    directory: Path, synchronous: str, batches: int, size: int = 100
) -> tuple[float, float]:
    """``size`` items per transaction: ``Tier.write_many`` vs ``executemany``."""
    rounds, per_round = 10, batches // 10
    conn = raw_connection(fresh_db(directory, f"batch-raw-{synchronous}.db"), synchronous)
    store = open_store(
        directory / f"batch-memrepl-{synchronous}.db", node_id=NODE, synchronous=synchronous
    )

    def raw(round_: int) -> None:
        for b in range(round_ * per_round, (round_ + 1) * per_round):
            conn.execute("BEGIN")
            stamp = time.time_ns()
            conn.executemany(
                INSERT, [raw_row(f"b{b}-{n}", content(n), stamp + n) for n in range(size)]
            )
            conn.execute("COMMIT")

    def ours(round_: int) -> None:
        for b in range(round_ * per_round, (round_ + 1) * per_round):
            store.working.write_many([LocalWrite.add(f"b{b}-{n}", content(n)) for n in range(size)])

    try:
        return alternating(rounds, per_round * size, ours, raw)
    finally:
        conn.close()
        store.close()


def build_tier(directory: Path, items: int) -> Path:
    """A working tier of ``items`` valid rows, bulk-inserted raw (building it is not timed)."""
    path = fresh_db(directory, f"tier-{items}.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    base = 1_700_000_000_000_000_000
    chunk = 50_000
    for start in range(0, items, chunk):
        conn.execute("BEGIN")
        conn.executemany(
            INSERT,
            (
                raw_row(f"item-{n}", content(n), base + n)
                for n in range(start, min(items, start + chunk))
            ),
        )
        conn.execute("COMMIT")
    conn.execute("UPDATE node SET clock_last_ns = ?", (base + items,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


def median_seconds(repeats: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_delta(path: Path, latest: int = 100, repeats: int = 300) -> tuple[float, float]:
    """Median seconds of ``get_modified_since`` for the latest ``latest`` changes, ours and raw."""
    conn = raw_connection(path, "FULL")
    (since,) = conn.execute(
        "SELECT modified_at FROM working_items ORDER BY modified_at DESC LIMIT 1 OFFSET ?",
        (latest,),
    ).fetchone()
    query = "SELECT * FROM working_items WHERE modified_at > ? ORDER BY modified_at"

    def raw() -> None:
        rows = conn.execute(query, (since,)).fetchall()
        assert len(rows) == latest

    raw_s = median_seconds(repeats, raw)
    conn.close()
    with open_store(path, node_id=NODE) as store:
        memory = store.working

        def ours() -> None:
            assert len(memory.get_modified_since(since)) == latest

        ours()  # warm the statement cache
        our_s = median_seconds(repeats, ours)
    return our_s, raw_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--big", type=int, default=1_000_000, help="items in the large tier")
    args = parser.parse_args()
    single = 100 if args.quick else 500
    batches = 20 if args.quick else 100
    big = 20_000 if args.quick else args.big
    directory = Path(tempfile.mkdtemp(prefix="memrepl-bench-"))
    try:
        print(
            f"memrepl storage bench (python {sys.version.split()[0]}, "
            f"SQLite {sqlite3.sqlite_version})"
        )
        print("ratio = memrepl / raw sqlite3 in this run (throughput; goal >= 0.50)\n")
        for synchronous in ("FULL", "NORMAL"):
            ours, raw = bench_single(directory, synchronous, single)
            print(
                f"single add, 1 tx each   synchronous={synchronous:<6} memrepl {ours:9.0f}/s  "
                f"raw {raw:9.0f}/s  ratio {ours / raw:5.2f}"
            )
            same = bench_single_same_statements(directory, synchronous, single)
            print(
                f"  (raw running the same statements as add, clock included: {same:9.0f}/s, "
                f"ratio {ours / same:5.2f})"
            )
            ours, raw = bench_batch(directory, synchronous, batches)
            print(
                f"write_many, 100 per tx  synchronous={synchronous:<6} memrepl {ours:9.0f}/s  "
                f"raw {raw:9.0f}/s  ratio {ours / raw:5.2f}"
            )
        print("\nget_modified_since, latest 100 changes (median per call)")
        results = {}
        for items in (10_000, big):
            path = build_tier(directory, items)
            ours, raw = bench_delta(path)
            results[items] = ours
            print(
                f"tier of {items:>9,} items   memrepl {ours * 1e6:8.0f} us  raw {raw * 1e6:8.0f} us"
                f"  ratio to raw {raw / ours:5.2f}"
            )
            path.unlink()
        growth = results[big] / results[10_000]
        print(f"\n{big:,} vs 10,000 items: {growth:.2f}x the time (goal < 1.3)")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
