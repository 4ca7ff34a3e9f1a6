"""PostgreSQL bench: memrepl on PostgreSQL against raw ``psycopg`` doing the same rows, in one run,
with the SQLite figures (memrepl against raw ``sqlite3``) taken in the same run for comparison.

Run: ``.venv/bin/python bench/postgres_bench.py`` (several minutes; ``--quick`` for a smoke run,
``--big N`` for the large tier's size, ``--items N`` for the apply stream). It starts its own
PostgreSQL server (the installed binaries, as ``tests/pgserver.py`` does: a temporary directory,
127.0.0.1, stopped at the end) with PostgreSQL's default durability (``fsync`` and
``synchronous_commit`` on), so a commit costs what it costs on a real hub, on this machine's disk.
The SQLite figures use memrepl's defaults (WAL, ``synchronous`` FULL). Figures:

- ``write_many`` of 100 items per transaction vs raw ``executemany`` of the same 100 rows into
  the same memrepl-created ``working_items`` table, fastest of 10 alternating rounds each --
  goal ratio >= 0.5 (on SQLite too, vs raw sqlite3);
- ``apply_sync_batch`` of the sync bench's stream (bench/sync_bench.py: 40% new items, 20%
  winning, 20% stale, 20% concurrent updates, 100 per batch) vs raw Last-Write-Wins upserts of
  the same rows (``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` newer) in 100-row transactions,
  each on a fresh copy of the same pre-state (``CREATE DATABASE ... TEMPLATE`` on PostgreSQL),
  best of ``--rounds`` alternating rounds -- goal ratio >= 0.5;
- ``get_modified_since`` of the latest 100 changes in working tiers of 10,000 and 1,000,000
  items (bulk-loaded raw, then ``VACUUM ANALYZE`` as autovacuum would), median of 300 calls:
  the ratio between the two sizes, goal < 1.3 (an index range scan does not grow with the tier).

The raw side does what a raw user must do for the same rows (encode the JSON, bind every
column); memrepl additionally validates, reads the rows it replaces, takes the store's write lock
(an advisory lock), stamps from the persisted clock and saves it, merges and logs conflicts.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

import memrepl
from memrepl.protocol import MemorySyncBatch
from memrepl.storage import LocalWrite

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.pgserver
import storage_bench  # the working rows and the SQLite write figures
import sync_bench  # the apply workload and the raw SQLite upsert

from tests.pgserver import TemporaryServer

NODE = storage_bench.NODE
#: PostgreSQL's own defaults for durability: a bench server is not a throwaway test server.
BENCH_SETTINGS = {"shared_buffers": "128MB", "max_connections": "50"}


def pg(sql: str) -> str:
    """A statement written with ``?`` placeholders, in psycopg's ``%s``."""
    return sql.replace("?", "%s")


class Server:
    """The bench's PostgreSQL server and its databases."""

    def __init__(self) -> None:
        self.server = TemporaryServer(settings=BENCH_SETTINGS).start()
        self.count = 0

    def new_database(self, *, template: str | None = None) -> tuple[str, str]:
        """A new database (a copy of ``template``, or empty); its name and URL."""
        self.count += 1
        name = f"bench_{self.count}"
        return name, self.server.create_database(name, template=template)

    def connect(self, name: str) -> psycopg.Connection[Any]:
        return psycopg.connect(self.server.conninfo(name), autocommit=True)

    def vacuum(self, name: str) -> None:
        with self.connect(name) as conn:
            conn.execute("VACUUM ANALYZE")

    def stop(self) -> None:
        self.server.stop()


def alternating(
    rounds: int, per_round: int, ours: Callable[[int], None], raw: Callable[[int], None]
) -> tuple[float, float]:
    """Items per second of each side, from its fastest of ``rounds`` alternating rounds."""
    return storage_bench.alternating(rounds, per_round, ours, raw)


def bench_write_many_pg(server: Server, batches: int, size: int = 100) -> tuple[float, float]:
    rounds, per_round = 10, batches // 10
    raw_name, raw_url = server.new_database()
    _, our_url = server.new_database()
    memrepl.open(raw_url, node_id=NODE).close()
    store = memrepl.open(our_url, node_id=NODE)
    conn = server.connect(raw_name)
    insert = pg(storage_bench.INSERT)

    def raw_row(item_id: str, n: int, stamp: int) -> tuple[object, ...]:
        # PostgreSQL's booleans are booleans: the raw row binds them as such.
        row = list(storage_bench.raw_row(item_id, storage_bench.content(n), stamp))
        for at in (2, 7, 16):
            row[at] = bool(row[at])
        return tuple(row)

    def raw(round_: int) -> None:
        for b in range(round_ * per_round, (round_ + 1) * per_round):
            stamp = time.time_ns()
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(
                    insert, [raw_row(f"b{b}-{n}", n, stamp + n) for n in range(size)]
                )

    def ours(round_: int) -> None:
        for b in range(round_ * per_round, (round_ + 1) * per_round):
            store.working.write_many(
                [LocalWrite.add(f"b{b}-{n}", storage_bench.content(n)) for n in range(size)]
            )

    try:
        return alternating(rounds, per_round * size, ours, raw)
    finally:
        conn.close()
        store.close()


def run_raw_apply_pg(server: Server, name: str, workload: sync_bench.Workload) -> float:
    """The raw LWW upserts of the stream on PostgreSQL (bench/sync_bench.py's, in psycopg)."""
    upsert = pg(sync_bench.UPSERT)
    with server.connect(name) as conn:
        (modified,) = conn.execute("SELECT max(modified_at) + 1 FROM episodic_items").fetchone()  # type: ignore[misc]
        start = time.perf_counter()
        for batch in workload.stream:
            rows = []
            for wire_item in batch.items:
                info = wire_item.version
                assert info is not None
                modified += 1
                rows.append(
                    (
                        wire_item.item_id,
                        wire_item.payload.decode(),
                        False,
                        wire_item.timestamp_ns,
                        info.origin_node,
                        info.whole_timestamp_ns,
                        info.whole_origin,
                        False,
                        "{}",
                        json.dumps(dict(info.causal_context), separators=(",", ":")),
                        int(wire_item.priority),
                        modified,
                        batch.source_node,
                        modified,
                        None,
                        None,
                    )
                )
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(upsert, rows)
        elapsed = time.perf_counter() - start
        (count,) = conn.execute("SELECT count(*) FROM episodic_items").fetchone()  # type: ignore[misc]
    expected = len(workload.pre_state) + workload.total * 40 // 100
    assert count == expected, (count, expected)
    return elapsed


def bench_apply(
    server: Server, directory: Path, workload: sync_bench.Workload, rounds: int
) -> dict[str, tuple[float, float]]:
    """Items per second applying the stream, memrepl and raw, on each backend."""
    pre_name, pre_url = server.new_database()
    sync_bench.build_pre_state(directory / "pre-state.db", workload)
    store, manager = sync_bench.receiver(pre_url)  # type: ignore[arg-type]
    with store:
        items = workload.pre_state
        for start in range(0, len(items), 250):
            chunk = items[start : start + 250]
            manager.apply_sync_batch(
                MemorySyncBatch(
                    f"seed{start}",
                    sync_bench.SEED,
                    sync_bench.RECEIVER,
                    sync_bench.TIER,
                    chunk,
                    cursor=start + 1,
                )
            )
    server.vacuum(pre_name)
    gc.collect()
    gc.freeze()
    times: dict[str, list[float]] = {
        "pg ours": [],
        "pg raw": [],
        "sqlite ours": [],
        "sqlite raw": [],
    }
    for _ in range(rounds):
        raw_name, _ = server.new_database(template=pre_name)
        times["pg raw"].append(run_raw_apply_pg(server, raw_name, workload))
        _, our_url = server.new_database(template=pre_name)
        elapsed, applied, conflicts = sync_bench.run_memrepl(our_url, workload)  # type: ignore[arg-type]
        # As on SQLite (bench/sync_bench.py): the stale fifth is not applied, a fifth conflicts.
        assert applied == workload.total * 80 // 100, applied
        assert conflicts == workload.total * 20 // 100, conflicts
        times["pg ours"].append(elapsed)
        for name in ("memrepl.db", "raw.db"):
            for leftover in directory.glob(f"{name}*"):
                leftover.unlink()
            shutil.copy(directory / "pre-state.db", directory / name)
        times["sqlite raw"].append(sync_bench.run_raw(directory / "raw.db", workload))
        times["sqlite ours"].append(sync_bench.run_memrepl(directory / "memrepl.db", workload)[0])
    gc.unfreeze()
    best = {name: workload.total / min(found) for name, found in times.items()}
    return {
        "postgresql": (best["pg ours"], best["pg raw"]),
        "sqlite": (best["sqlite ours"], best["sqlite raw"]),
    }


def build_tier_pg(server: Server, items: int) -> str:
    """A working tier of ``items`` rows on PostgreSQL, bulk-loaded with COPY (not timed)."""
    name, url = server.new_database()
    memrepl.open(url, node_id=NODE).close()
    base = 1_700_000_000_000_000_000
    columns = storage_bench.COLUMNS
    with server.connect(name) as conn:
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY working_items ({columns}) FROM STDIN") as copy,
        ):
            for n in range(items):
                row = list(storage_bench.raw_row(f"item-{n}", storage_bench.content(n), base + n))
                for at in (2, 7, 16):
                    row[at] = bool(row[at])
                copy.write_row(row)
        conn.execute("UPDATE node SET clock_last_ns = %s", (base + items,))
    server.vacuum(name)
    return url


def bench_delta(location: Path | str, latest: int = 100, repeats: int = 300) -> float:
    """Median seconds of ``get_modified_since`` for the latest ``latest`` changes."""
    with memrepl.open(location, node_id=NODE) as store:
        with store.read() as conn:
            (since,) = conn.exec_driver_sql(
                "SELECT modified_at FROM working_items ORDER BY modified_at DESC "
                f"LIMIT 1 OFFSET {latest}"
            ).one()
        memory = store.working

        def ours() -> None:
            assert len(memory.get_modified_since(since)) == latest

        ours()  # warm the statement cache
        return storage_bench.median_seconds(repeats, ours)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--big", type=int, default=1_000_000, help="items in the large tier")
    parser.add_argument("--items", type=int, default=20_000, help="items in the apply stream")
    parser.add_argument("--rounds", type=int, default=2, help="apply rounds, best of")
    args = parser.parse_args()
    batches = 20 if args.quick else 100
    big = 20_000 if args.quick else args.big
    items = 2_000 if args.quick else args.items
    directory = Path(tempfile.mkdtemp(prefix="memrepl-pg-bench-"))
    server = Server()
    try:
        with server.connect("postgres") as conn:
            (version,) = conn.execute("SHOW server_version").fetchone()  # type: ignore[misc]
        print(
            f"memrepl PostgreSQL bench (python {sys.version.split()[0]}, PostgreSQL {version}, "
            f"psycopg {psycopg.__version__}, SQLite {sqlite3.sqlite_version})"
        )
        print("ratio = memrepl / raw driver in this run (throughput; goal >= 0.50)\n")
        ours, raw = bench_write_many_pg(server, batches)
        print(
            f"write_many, 100 per tx   PostgreSQL  memrepl {ours:8.0f}/s  raw psycopg {raw:8.0f}/s"
            f"  ratio {ours / raw:5.2f}"
        )
        ours, raw = storage_bench.bench_batch(directory, "FULL", batches)
        print(
            f"write_many, 100 per tx   SQLite      memrepl {ours:8.0f}/s  raw sqlite3 {raw:8.0f}/s"
            f"  ratio {ours / raw:5.2f}"
        )
        print(f"\napply_sync_batch, {items:,} items in 100-item batches (best of {args.rounds})")
        workload = sync_bench.Workload(items, random.Random(42))
        for backend, (ours, raw) in bench_apply(server, directory, workload, args.rounds).items():
            driver = "psycopg" if backend == "postgresql" else "sqlite3"
            print(
                f"  {backend:<11} memrepl {ours:8.0f}/s  raw {driver} {raw:8.0f}/s"
                f"  ratio {ours / raw:5.2f}"
            )
        print("\nget_modified_since, latest 100 changes (median per call)")
        for backend in ("postgresql", "sqlite"):
            found = {}
            for size in (10_000, big):
                if backend == "postgresql":
                    location: Path | str = build_tier_pg(server, size)
                else:
                    location = storage_bench.build_tier(directory, size)
                found[size] = bench_delta(location)
                print(f"  {backend:<11} tier of {size:>9,} items  {found[size] * 1e6:8.0f} us")
            print(
                f"  {backend:<11} {big:,} vs 10,000 items: {found[big] / found[10_000]:.2f}x "
                "the time (goal < 1.3)"
            )
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
