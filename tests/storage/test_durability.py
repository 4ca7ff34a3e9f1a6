"""Durability of the data and of the clock: new processes, a wall clock that steps back, and two
processes writing one file at once."""

from __future__ import annotations

import itertools
import json
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from memrepl.protocol.enums import MemoryTier
from memrepl.storage import Store

from ..files import query
from .conftest import PYTHON, subprocess_env


def run_python(script: str, *args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [PYTHON, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


REOPEN_SCRIPT = """
    import json, sys
    import memrepl.storage
    wall = (lambda: 1_000) if sys.argv[2] == "backwards" else None
    options = {"wall": wall} if wall else {}
    with memrepl.storage.open(sys.argv[1], node_id="node-a", **options) as store:
        tiers = type(store.working.tier)
        seen = {tier.name: store.tier(tier).get_modified_since(0) for tier in tiers}
        added = store.working.add("from-child", {"child": True})
    print(json.dumps({"seen": seen, "added": added}))
"""


def all_changes(store: Store) -> dict[str, list[dict[str, object]]]:
    return {tier.name: store.tier(tier).get_modified_since(0) for tier in MemoryTier}


def test_reopen_in_a_new_process(opener: Callable[..., Store], db_path: Path) -> None:
    with opener() as store:
        for tier in MemoryTier:
            memory = store.tier(tier)
            memory.add("kept", {"tier": tier.name, "nested": {"list": [1, 2.5, None, "é"]}})
            memory.merge("merged", {"a": 1})
            memory.merge("merged", {"b": 2})
            memory.add("dropped", {"v": 1})
            memory.delete("dropped")
        expected = json.loads(json.dumps(all_changes(store)))
        (clock,) = query(db_path, "SELECT clock_last_ns FROM node")[0]

    out = json.loads(run_python(REOPEN_SCRIPT, str(db_path), "real"))
    assert out["seen"] == expected
    assert out["added"]["modified_at"] > clock

    with opener() as store:
        # As JSON, like ``expected``: a record's namespace is a tuple, JSON's is a list.
        again = json.loads(json.dumps(all_changes(store)))
    assert again["WORKING"][-1]["item_id"] == "from-child"
    assert {name: rows[:3] for name, rows in again.items()} == {
        name: rows[:3] for name, rows in expected.items()
    }


def test_wall_clock_stepping_back_in_a_new_process(
    opener: Callable[..., Store], db_path: Path
) -> None:
    with opener() as store:
        last = store.working.add("x", {"v": 1})["modified_at"]
    out = json.loads(run_python(REOPEN_SCRIPT, str(db_path), "backwards"))
    assert out["added"]["modified_at"] == last + 1
    assert out["added"]["timestamp_ns"] == last + 1


def test_wall_clock_stepping_back_in_one_process(opener: Callable[..., Store]) -> None:
    readings: Iterator[int] = iter(range(10**18, 0, -(10**15)))
    store = opener(wall=lambda: next(readings))
    stamps = []
    for n in range(20):
        stamps.append(store.working.add(f"i{n}", {"n": n})["modified_at"])
        stamps.append(store.working.update(f"i{n}", {"n": -n})["modified_at"])
    assert stamps == sorted(set(stamps))
    assert len(stamps) == 40


def test_stamps_rise_across_restarts_with_a_frozen_clock(
    opener: Callable[..., Store], db_path: Path
) -> None:
    stamps = []
    for round_ in range(3):
        with opener(wall=lambda: 5) as store:
            stamps.append(store.episodic.add(f"r{round_}", {})["modified_at"])
    assert stamps == [5, 6, 7]


WRITER_SCRIPT = """
    import os, sys, time
    from sqlalchemy import text
    import memrepl.storage
    from memrepl.storage.items import LocalWrite, write_local

    path, proc, count, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    log = text("INSERT INTO commit_log (modified_at, proc) VALUES (:stamp, :proc)")
    with memrepl.storage.open(path, node_id="node-a", busy_timeout_ms=60_000) as store:
        spec = store.working.spec
        while not os.path.exists(go):
            time.sleep(0.001)
        for n in range(count):
            time.sleep(0.001)  # leave the lock free now and then, so the writers interleave
            if n % 2:
                store.working.add(f"p{proc}-{n}", {"proc": proc, "n": n})
                continue
            with store.write() as conn, store.stamping(conn) as clock:
                (item,) = write_local(
                    conn, spec, store.node_id, clock, [LocalWrite.add(f"p{proc}-{n}", {"n": n})]
                )
                conn.execute(log, {"stamp": item.modified_at, "proc": proc})
"""


#: The commit log's key, assigned in commit order under the write lock.
SEQUENCE_KEY = {
    "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "postgresql": "BIGSERIAL PRIMARY KEY",
}


def test_two_processes_writing_one_file(
    opener: Callable[..., Store], db_path: Path, backend: str, tmp_path: Path
) -> None:
    """Two processes writing one store at once (on PostgreSQL: two machines would do the
    same): every stamp unique, commit order is stamp order, nothing lost."""
    count = 300
    opener().close()  # create and migrate once
    query(
        db_path,
        f"CREATE TABLE commit_log (seq {SEQUENCE_KEY[backend]}, modified_at BIGINT, proc INTEGER)",
    )
    go = tmp_path / "go"
    writers = [
        subprocess.Popen(
            [
                PYTHON,
                "-c",
                textwrap.dedent(WRITER_SCRIPT),
                str(db_path),
                str(proc),
                str(count),
                str(go),
            ],
            env=subprocess_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for proc in (0, 1)
    ]
    time.sleep(0.5)
    go.touch()
    for writer in writers:
        _, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err

    stamps = [row[0] for row in query(db_path, "SELECT modified_at FROM working_items")]
    assert len(stamps) == len(set(stamps)) == 2 * count
    # Commit order (the log's AUTOINCREMENT, assigned under the write lock) is stamp order.
    log = query(db_path, "SELECT modified_at, proc FROM commit_log ORDER BY seq")
    assert len(log) == count
    logged = [stamp for stamp, _ in log]
    assert logged == sorted(set(logged))
    procs = [proc for _, proc in log]
    assert {0, 1} == set(procs)
    assert query(db_path, "SELECT clock_last_ns FROM node") == [(max(stamps),)]
    # Each process's own writes rise too, and the two really did interleave.
    switches = sum(1 for before, after in itertools.pairwise(procs) if before != after)
    assert switches >= 2, switches
    for proc in (0, 1):
        rows = query(
            db_path,
            "SELECT item_id, modified_at FROM working_items WHERE item_id LIKE ?",
            f"p{proc}-%",
        )
        own = [stamp for _, stamp in sorted(rows, key=lambda row: int(row[0].split("-")[1]))]
        assert own == sorted(own)
        assert len(own) == count
