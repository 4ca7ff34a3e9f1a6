"""Crash safety of ``apply_sync_batch``: a receiver killed with SIGKILL at random moments.

A source store writes 40 rounds of 50 writes (new items, updates, merges, deletes, resurrections),
and after each round cuts exactly one delta batch: batch K holds the 50 items of round K, each
carrying ``{"batch": K}`` in its content, and its cursor is the source's last change of round K.
The receiver starts with a few items of its own that round K writes concurrently (they lose, and
each is one conflict row).

Each trial starts a real Python process (``crash_worker.py``) that applies the 40 packed batches to
a real store -- a SQLite file, or a PostgreSQL database (the server lives on; the client dies in
the middle of its transactions) -- and kills it with SIGKILL after a random delay. After each
kill:

- the database is intact (SQLite's ``PRAGMA integrity_check``; amcheck on PostgreSQL);
- the inbound cursor names a batch boundary K, and the tier holds exactly the fold of batches
  0..K over the receiver's own items: every item of a batch up to K with the version of the last
  such batch that touched it, nothing of a later batch (each batch is all or nothing), every
  batch the worker reported committed is there, and the conflict log holds one row per
  concurrent item applied -- no more;
- the next sync completes -- re-applying every batch in order, or ``sync_with_peer`` from the
  source over a LocalMesh (which resumes at the receiver's cursor) -- and the receiver then
  equals the source: same items, versions and contents, no loss, no duplicate conflict row.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import memrepl
from memrepl.mesh import LocalMesh
from memrepl.protocol.batch import MemorySyncBatch
from memrepl.protocol.enums import MemoryTier, SyncOperation
from memrepl.storage.items import LocalWrite
from memrepl.storage.store import Store
from memrepl.sync.manager import MemorySyncManager
from memrepl.sync.results import SyncStatus

from ..conftest import Location
from ..files import intact, query
from ..pgserver import Databases
from .conftest import examples

WORKER = Path(__file__).with_name("crash_worker.py")
TIER = MemoryTier.EPISODIC
SOURCE, RECEIVER = "src", "rcv"
ROUNDS, PER_ROUND = 40, 50
PRESEEDED = 10
NORMAL_TRIALS = 24
SLOW_TRIALS = 200

#: A row of the tier as compared here: (version_ts, version_origin, deleted, content).
Row = tuple[int, str, bool, dict[str, Any]]


@dataclass
class Stream:
    """The pre-built batches, what each one carries, and the stores they come from. The
    receiver starts as a copy of its template on each backend (written before the source's
    writes, so they lose), holding its own rows."""

    source: Store
    source_path: Path
    templates: dict[str, Location]
    files: list[Path]
    batches: list[dict[str, Row]]
    cursors: list[int]
    receiver_own: dict[str, dict[str, Row]]


def plan_rounds(rng: random.Random) -> list[list[tuple[str, str]]]:
    """40 rounds of 50 (operation, item id) pairs, every id at most once per round."""
    live: list[str] = []
    dead: list[str] = []
    counter = 0
    rounds: list[list[tuple[str, str]]] = []

    def new_id() -> str:
        nonlocal counter
        counter += 1
        return f"item-{counter:05d}"

    for number in range(ROUNDS):
        ops: list[tuple[str, str]] = []
        if number == 0:
            ops = [("add", new_id()) for _ in range(PER_ROUND)]
        else:
            updated = rng.sample(live, 10)
            rest = [i for i in live if i not in updated]
            merged = rng.sample(rest, 5)
            rest = [i for i in rest if i not in merged]
            deleted = rng.sample(rest, 10)
            revived = rng.sample(dead, min(5, len(dead)))
            ops += [("update", i) for i in updated]
            ops += [("merge", i) for i in merged]
            ops += [("delete", i) for i in deleted]
            ops += [("add", i) for i in revived]
            ops += [("add", new_id()) for _ in range(PER_ROUND - len(ops))]
        for op, item_id in ops:
            if op == "delete":
                live.remove(item_id)
                dead.append(item_id)
            elif op == "add" and item_id in dead:
                dead.remove(item_id)
                live.append(item_id)
            elif op == "add":
                live.append(item_id)
        rounds.append(ops)
    return rounds


def write_round(store: Store, number: int, ops: list[tuple[str, str]]) -> None:
    writes = []
    for seq, (op, item_id) in enumerate(ops):
        content = {"batch": number, "seq": seq, "text": f"{op} {item_id} in batch {number}"}
        if op == "add":
            writes.append(LocalWrite.add(item_id, content))
        elif op == "update":
            writes.append(LocalWrite.update(item_id, content))
        elif op == "merge":
            writes.append(LocalWrite.merge(item_id, {"batch": number, f"m{number}": seq}))
        else:
            writes.append(LocalWrite.delete(item_id))
    store.episodic.write_many(writes)


def wire_row(item: Any) -> Row:
    assert item.version is not None
    content = json.loads(item.payload) if item.payload else {}
    return (
        item.timestamp_ns,
        item.version.origin_node,
        item.operation == SyncOperation.DELETE,
        content,
    )


def tier_rows(path: Location) -> dict[str, Row]:
    found = query(
        path, "SELECT item_id, version_ts, version_origin, deleted, content FROM episodic_items"
    )
    return {row[0]: (row[1], row[2], bool(row[3]), json.loads(row[4])) for row in found}


def scalar(path: Location, sql: str) -> Any:
    return query(path, sql)[0][0]


def checkpointed(path: Path) -> None:
    """Fold the WAL into the file, so copying the file alone copies the database."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def receiver_templates(
    directory: Path, own_ids: list[str], request: pytest.FixtureRequest
) -> dict[str, Location]:
    """The receiver's starting store on each backend, holding its own items."""
    templates: dict[str, Location] = {"sqlite": directory / "receiver-template.db"}
    if not os.environ.get("MEMREPL_SKIP_POSTGRES"):
        databases: Databases = request.getfixturevalue("postgres")
        templates["postgresql"] = databases.create_untracked()
    for template in templates.values():
        with memrepl.open(template, node_id=RECEIVER) as receiver:
            receiver.episodic.write_many([LocalWrite.add(i, {"receiver": i}) for i in own_ids])
    checkpointed(templates["sqlite"])
    return templates


@pytest.fixture(scope="module")
def stream(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stream]:
    directory = tmp_path_factory.mktemp("crash-stream")
    rounds = plan_rounds(random.Random(20240611))
    touched: dict[str, list[int]] = {}
    for number, ops in enumerate(rounds):
        for _, item_id in ops:
            touched.setdefault(item_id, []).append(number)
    # The receiver's own items: ids the stream adds once (after round 0) and never touches again.
    own_ids = [i for i, numbers in touched.items() if len(numbers) == 1 and numbers[0] > 0]
    own_ids = own_ids[:: len(own_ids) // PRESEEDED][:PRESEEDED]

    # Written first, so their stamps are below the source's: the source's writes win.
    templates = receiver_templates(directory, own_ids, request)

    source_path = directory / "source.db"
    source = memrepl.open(source_path, node_id=SOURCE)
    manager = MemorySyncManager(node_id=SOURCE)
    manager.register_memory_tier(TIER, source.episodic)
    files: list[Path] = []
    batches: list[dict[str, Row]] = []
    cursors: list[int] = []
    since = 0
    for number, ops in enumerate(rounds):
        write_round(source, number, ops)
        batch = manager.create_delta_batch(TIER, RECEIVER, since_timestamp=since)
        assert len(batch.items) == PER_ROUND
        assert batch.cursor is not None and batch.cursor > since
        since = batch.cursor
        batches.append({item.item_id: wire_row(item) for item in batch.items})
        cursors.append(batch.cursor)
        files.append(directory / f"batch-{number:02d}.bin")
        files[-1].write_bytes(batch.pack())
    own = {backend: tier_rows(template) for backend, template in templates.items()}
    yield Stream(source, source_path, templates, files, batches, cursors, own)
    source.close()


def expected_after(own: dict[str, Row], stream: Stream, last: int) -> tuple[dict[str, Row], int]:
    """The receiver's tier after batches 0..last (-1: none), and how many conflicts it logged."""
    rows = dict(own)
    conflicts = 0
    for batch in stream.batches[: last + 1]:
        for item_id, row in batch.items():
            if item_id in own and rows[item_id] == own[item_id]:
                conflicts += 1
            rows[item_id] = row
    return rows, conflicts


def check_conflict_log(path: Location, expected: int) -> None:
    ((total,),) = query(path, "SELECT count(*) FROM conflicts")
    ((distinct,),) = query(
        path,
        "SELECT count(*) FROM (SELECT DISTINCT tier, item_id, winner_ts, winner_origin, "
        "loser_ts, loser_origin FROM conflicts) AS pairs",
    )
    losers = {row[0] for row in query(path, "SELECT DISTINCT loser_origin FROM conflicts")}
    assert total == distinct == expected
    assert losers <= {RECEIVER}


def run_worker(stream: Stream, db: Location, kill_after_s: float | None) -> tuple[list[int], float]:
    """Run the worker on ``db``; SIGKILL it ``kill_after_s`` after it is ready (None: let it
    finish). Return the batches it reported committed and how long it ran after ``ready``."""
    process = subprocess.Popen(
        [sys.executable, str(WORKER), str(db), RECEIVER, *map(str, stream.files)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        start = time.perf_counter()
        assert first == "ready\n", process.communicate()[1]
        if kill_after_s is not None:
            time.sleep(kill_after_s)
            process.send_signal(signal.SIGKILL)
            elapsed = kill_after_s
            out, err = process.communicate(timeout=60)
        else:
            lines = []
            while lines[-1:] != ["done\n"] and (line := process.stdout.readline()):
                lines.append(line)
            # The stream took this long (the interpreter's exit not counted).
            elapsed = time.perf_counter() - start
            rest, err = process.communicate(timeout=60)
            out = "".join([*lines, rest])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if kill_after_s is None:
        assert process.returncode == 0, err
        assert out.endswith("done\n")
    else:
        assert process.returncode in (0, -signal.SIGKILL), err
    reported = [int(line.split()[1]) for line in out.splitlines() if line.startswith("applied")]
    assert reported == list(range(len(reported)))
    return reported, elapsed


def check_after_kill(stream: Stream, db: Location, reported: list[int], backend: str) -> int:
    """Check a killed receiver's store; return the last batch it holds (-1: none)."""
    assert intact(db)
    cursor = scalar(
        db,
        f"SELECT coalesce(max(applied_cursor), 0) FROM inbound_cursors "
        f"WHERE tier = {int(TIER)} AND peer_id = '{SOURCE}'",
    )
    assert cursor == 0 or cursor in stream.cursors
    last = stream.cursors.index(cursor) if cursor else -1
    # Every commit the worker saw return survived the kill.
    assert last >= (reported[-1] if reported else -1)
    rows, conflicts = expected_after(stream.receiver_own[backend], stream, last)
    assert tier_rows(db) == rows
    check_conflict_log(db, conflicts)
    return last


def reapply_all(stream: Stream, db: Location, last: int) -> None:
    with memrepl.open(db, node_id=RECEIVER) as receiver:
        manager = MemorySyncManager(node_id=RECEIVER)
        manager.register_memory_tier(TIER, receiver.episodic)
        for number, file in enumerate(stream.files):
            applied, conflicts = manager.apply_sync_batch(MemorySyncBatch.unpack(file.read_bytes()))
            if number <= last:
                # Already there: a redelivered batch changes nothing and logs nothing.
                assert (applied, conflicts) == (0, 0)
            else:
                assert applied == PER_ROUND


async def sync_from_source(stream: Stream, db: Location, last: int) -> None:
    hub = LocalMesh()
    source = MemorySyncManager(node_id=SOURCE, mesh=hub.endpoint(SOURCE))
    source.register_memory_tier(TIER, stream.source.episodic)
    with memrepl.open(db, node_id=RECEIVER) as receiver:
        manager = MemorySyncManager(node_id=RECEIVER, mesh=hub.endpoint(RECEIVER))
        manager.register_memory_tier(TIER, receiver.episodic)
        result = await source.sync_with_peer(RECEIVER, TIER)
        await hub.settle()
    assert result.ok, result
    assert result.cursor == stream.cursors[-1]
    resent = {i for batch in stream.batches[last + 1 :] for i in batch}
    # It resumed at the receiver's cursor: only what changed after it travels again.
    assert result.items == len(resent)
    assert result.status == (SyncStatus.SYNCED if resent else SyncStatus.UP_TO_DATE)


def check_equal_to_source(stream: Stream, db: Location, backend: str) -> None:
    assert intact(db)
    source_rows = tier_rows(stream.source_path)
    receiver_rows = tier_rows(db)
    assert len(receiver_rows) == len(source_rows)
    assert receiver_rows == source_rows
    check_conflict_log(db, len(stream.receiver_own[backend]))


class Receivers:
    """Fresh receiver stores, copies of the backend's template, removed after their trial."""

    def __init__(self, stream: Stream, backend: str, directory: Path, request: Any) -> None:
        self.template = stream.templates[backend]
        self.directory = directory
        self.databases: Databases | None = None
        if backend == "postgresql":
            self.databases = request.getfixturevalue("postgres")

    def new(self, name: str) -> Location:
        if self.databases is not None:
            return self.databases.create_untracked(template=Databases.name_of(str(self.template)))
        db = self.directory / f"{name}.db"
        shutil.copy(self.template, db)
        return db

    def remove(self, db: Location) -> None:
        if self.databases is not None:
            self.databases.drop(str(db))
        else:
            for path in self.directory.glob(f"{Path(db).name}*"):
                path.unlink()


def run_trials(stream: Stream, receivers: Receivers, backend: str, trials: int, seed: int) -> None:
    rng = random.Random(seed)
    # A full run tells how long the stream takes here: kills land anywhere in it.
    calibration = receivers.new("calibration")
    reported, window = run_worker(stream, calibration, None)
    assert reported == list(range(ROUNDS))
    check_after_kill(stream, calibration, reported, backend)
    check_equal_to_source(stream, calibration, backend)
    receivers.remove(calibration)

    outcomes: list[int] = []
    for trial in range(trials):
        db = receivers.new(f"trial-{trial:03d}")
        reported, _ = run_worker(stream, db, rng.uniform(0, window))
        last = check_after_kill(stream, db, reported, backend)
        outcomes.append(last)
        if trial % 2:
            asyncio.run(sync_from_source(stream, db, last))
        else:
            reapply_all(stream, db, last)
        check_equal_to_source(stream, db, backend)
        receivers.remove(db)
    # The kills did land inside the stream, not only before or after it.
    assert any(0 <= last < ROUNDS - 1 for last in outcomes), outcomes


def test_sigkill_during_apply_leaves_whole_batches(
    stream: Stream, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    receivers = Receivers(stream, backend, tmp_path, request)
    run_trials(stream, receivers, backend, examples(backend, NORMAL_TRIALS), seed=1)


@pytest.mark.slow
def test_sigkill_during_apply_leaves_whole_batches_long(
    stream: Stream, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    receivers = Receivers(stream, backend, tmp_path, request)
    run_trials(stream, receivers, backend, SLOW_TRIALS, seed=2)
