"""LangGraph store bench: ``put`` and ``search`` through ``MemreplStore``, against memrepl's own
calls and against LangGraph's ``SqliteStore``, on the same data in the same run.

Run: ``.venv/bin/python bench/langgraph_bench.py`` (about a minute; ``--quick`` for a smoke run).
Needs ``memrepl[langgraph]`` and ``langgraph-checkpoint-sqlite`` (both in ``.[dev]``).

Three contenders, each on its own file, rounds alternating between them (A B C, A B C, ...) and
each figure the fastest round (noise on a shared machine only adds time):

- **adapter**: ``MemreplStore`` (LangGraph's API) over a memrepl store;
- **memrepl**: the same work through memrepl's own API -- ``write_many([LocalWrite.put(...)])``
  on the episodic tier and ``Store.search(...)`` (with ``wait_s`` by meaning, as the adapter
  waits for the vector index): the baseline, so the ratio is what the translation costs;
- **SqliteStore**: LangGraph's own SQLite store, the store users would otherwise pick, with
  the same durability as memrepl's default (WAL, ``synchronous=FULL``).

Measured:

- ``put``, one item per call (each its own transaction) and 100 per call (``batch`` of 100
  ``PutOp``s; ``write_many`` of 100), items of a sentence, a number and a tag, 20 namespaces;
- ``search`` without a query (namespace and a filter, limit 10);
- ``search`` with a query: by meaning for the adapter and memrepl (``IndexConfig`` with a
  deterministic hashing embedder, the vector index caught up first). ``SqliteStore``'s vector
  search needs the ``sqlite-vec`` extension, which this Python's ``sqlite3`` cannot load, so it
  is shown by keyword: memrepl and the adapter without an index search by keyword (BM25), and
  ``SqliteStore`` without an index ignores the query (it answers what a search without one
  does) -- its column there is what a store that cannot search by query costs.

Figures are operations per second and, for the adapter and SqliteStore, a ratio to memrepl's.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from langgraph.store.base import PutOp
from langgraph.store.sqlite import SqliteStore

import memrepl
from memrepl.integrations.langgraph import MemreplStore
from memrepl.namespaces import keyed_id
from memrepl.storage import LocalWrite
from memrepl.storage.embedders import HashingEmbedder

WORDS = (
    "alice", "bob", "carol", "dave", "tea", "coffee", "paris", "lisbon", "rome", "train",
    "plane", "allergic", "peanuts", "cats", "dogs", "meeting", "friday", "monday", "report",
    "budget", "garden", "music", "piano", "running", "books", "summer", "winter",
)  # fmt: skip
DIMS = 128
_HASHING = HashingEmbedder(DIMS)


def embed(texts: Sequence[str]) -> list[list[float]]:
    return _HASHING.embed(list(texts))


def dataset(count: int, seed: int = 7) -> list[tuple[tuple[str, ...], str, dict[str, Any]]]:
    rng = random.Random(seed)
    return [
        (
            ("users", f"u{n % 20}"),
            f"memory-{n}",
            {
                "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))),
                "n": n,
                "tag": f"t{n % 10}",
            },
        )
        for n in range(count)
    ]


def queries(count: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(WORDS)} {rng.choice(WORDS)}" for _ in range(count)]


class Contender:
    """One store under test, opened fresh in ``directory`` for each round."""

    name = ""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def open(self, label: str, *, index: bool) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def put_each(self, items: Sequence[tuple[tuple[str, ...], str, dict[str, Any]]]) -> None:
        raise NotImplementedError

    def put_batches(self, items: Sequence[tuple[tuple[str, ...], str, dict[str, Any]]]) -> None:
        raise NotImplementedError

    def search(self, query: str | None, namespace: tuple[str, ...], filter: Any) -> int:
        raise NotImplementedError

    def catch_up(self) -> None:
        """Before timing searches by meaning: embed everything written."""


class Adapter(Contender):
    name = "adapter"

    def open(self, label: str, *, index: bool) -> None:
        config = {"dims": DIMS, "embed": embed, "fields": ["text"]} if index else None
        self.store = MemreplStore(
            self.directory / f"adapter-{label}.db",
            node_id="bench",
            index=config,  # type: ignore[arg-type]
        )

    def close(self) -> None:
        self.store.close()

    def put_each(self, items: Sequence[tuple[tuple[str, ...], str, dict[str, Any]]]) -> None:
        for namespace, key, value in items:
            self.store.put(namespace, key, value)

    def put_batches(self, items: Sequence[tuple[tuple[str, ...], str, dict[str, Any]]]) -> None:
        for start in range(0, len(items), 100):
            self.store.batch(
                [PutOp(ns, key, value) for ns, key, value in items[start : start + 100]]
            )

    def search(self, query: str | None, namespace: tuple[str, ...], filter: Any) -> int:
        return len(self.store.search(namespace, query=query, filter=filter, limit=10))

    def catch_up(self) -> None:
        self.store.store.index_vectors()


class Native(Contender):
    name = "memrepl"

    def open(self, label: str, *, index: bool) -> None:
        self.store = memrepl.open(self.directory / f"native-{label}.db", node_id="bench")
        self.mode = "keyword"
        # What the adapter writes for a put: with an IndexConfig of fields ["text"], those paths.
        self.paths: list[str] | None = None
        if index:
            self.store.attach_embedder(HashingEmbedder(DIMS), tiers=[memrepl.MemoryTier.EPISODIC])
            self.mode, self.paths = "vector", ["text"]

    def close(self) -> None:
        self.store.close()

    def _write(self, namespace: tuple[str, ...], key: str, value: dict[str, Any]) -> LocalWrite:
        return LocalWrite.put(
            keyed_id(namespace, key), value, namespace=namespace, key=key, embed=self.paths
        )

    def put_each(self, items: Sequence[tuple[tuple[str, ...], str, dict[str, Any]]]) -> None:
        for namespace, key, value in items:
            self.store.episodic.write_many([self._write(namespace, key, value)])

    def put_batches(self, items: Sequence[tuple[tuple[str, ...], str, dict[str, Any]]]) -> None:
        for start in range(0, len(items), 100):
            self.store.episodic.write_many(
                [self._write(ns, key, value) for ns, key, value in items[start : start + 100]]
            )

    def search(self, query: str | None, namespace: tuple[str, ...], filter: Any) -> int:
        hits = self.store.search(
            query,
            tiers=[memrepl.MemoryTier.EPISODIC],
            namespace=namespace,
            filter=filter,
            limit=10,
            mode=self.mode if query else "keyword",
            # As the adapter does: a search by meaning first checks the index has caught up.
            wait_s=30 if query and self.mode == "vector" else None,
        )
        return len(hits)

    def catch_up(self) -> None:
        self.store.index_vectors()


class Sqlite(Contender):
    name = "SqliteStore"

    def open(self, label: str, *, index: bool) -> None:
        # No index: sqlite-vec cannot load into this Python's sqlite3 (see the docstring).
        path = self.directory / f"sqlite-{label}.db"
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.store = SqliteStore(self.conn)
        self.store.setup()

    def close(self) -> None:
        self.conn.close()

    def put_each(self, items: Sequence[tuple[tuple[str, ...], str, dict[str, Any]]]) -> None:
        for namespace, key, value in items:
            self.store.put(namespace, key, value)

    def put_batches(self, items: Sequence[tuple[tuple[str, ...], str, dict[str, Any]]]) -> None:
        for start in range(0, len(items), 100):
            self.store.batch(
                [PutOp(ns, key, value) for ns, key, value in items[start : start + 100]]
            )

    def search(self, query: str | None, namespace: tuple[str, ...], filter: Any) -> int:
        return len(self.store.search(namespace, query=query, filter=filter, limit=10))


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


MEASURES = (
    "put, 1 per call",
    "put, 100 per call",
    "put, 1 per call (with an index)",
    "search: namespace + filter",
    "search: query, by keyword",
    "search: query, by meaning",
)


def one_round(
    contender: Contender,
    round_number: int,
    data: Sequence[tuple[tuple[str, ...], str, dict[str, Any]]],
    asked: Sequence[str],
    filters: Sequence[tuple[dict[str, str], tuple[str, ...]]],
) -> dict[str, float]:
    """Seconds each measure took for ``contender`` in one round (each on fresh files)."""
    found: dict[str, float] = {}
    contender.open(f"{round_number}-each", index=False)
    try:
        found["put, 1 per call"] = timed(lambda: contender.put_each(data))
    finally:
        contender.close()
    contender.open(f"{round_number}-batches", index=False)
    try:
        found["put, 100 per call"] = timed(lambda: contender.put_batches(data))
        found["search: namespace + filter"] = timed(
            lambda: [contender.search(None, ns, f) for f, ns in filters]
        )
        found["search: query, by keyword"] = timed(
            lambda: [contender.search(q, ("users",), None) for q in asked]
        )
    finally:
        contender.close()
    if isinstance(contender, Sqlite):
        return found
    contender.open(f"{round_number}-indexed", index=True)
    try:
        found["put, 1 per call (with an index)"] = timed(lambda: contender.put_each(data))
        contender.catch_up()
        found["search: query, by meaning"] = timed(
            lambda: [contender.search(q, ("users",), None) for q in asked]
        )
    finally:
        contender.close()
    return found


def run(items: int, searches: int, rounds: int) -> None:
    data = dataset(items)
    asked = queries(searches)
    filters = [({"tag": f"t{n % 10}"}, ("users", f"u{n % 20}")) for n in range(searches)]
    best: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as directory:
        contenders = [kind(Path(directory)) for kind in (Native, Adapter, Sqlite)]
        for round_number in range(rounds):
            for contender in contenders:
                for what, seconds in one_round(
                    contender, round_number, data, asked, filters
                ).items():
                    key = (contender.name, what)
                    best[key] = min(best.get(key, float("inf")), seconds)
    print(f"{items} items, {searches} searches; fastest of {rounds} alternating rounds")
    print(f"{'':34}{'memrepl':>14}{'adapter':>22}{'SqliteStore':>22}")
    for what in MEASURES:
        count = searches if what.startswith("search") else items
        base = best.get(("memrepl", what))
        cells = []
        for name in ("memrepl", "adapter", "SqliteStore"):
            seconds = best.get((name, what))
            if seconds is None:
                cells.append("-")
                continue
            ratio = "" if name == "memrepl" or base is None else f" ({base / seconds:.2f}x)"
            cells.append(f"{count / seconds:,.0f}/s{ratio}")
        print(f"{what:34}{cells[0]:>14}{cells[1]:>22}{cells[2]:>22}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 items, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.items, args.searches, args.rounds = 200, 50, 1
    run(args.items, args.searches, args.rounds)


if __name__ == "__main__":
    main()
