"""``rewind_clock``: after a fast wall clock is fixed, the node's stamps nobody else holds are
moved back in order, its clock with them, and replication works again at once.

memrepl.storage.rewind: every stamp of this node above wall time + the tolerance is mapped onto
the values just above that point, order kept; refused when a peer acknowledged a position above
it or another node's stamp is above it.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

import memrepl
from memrepl.errors import ClockRewindError, ClockSkewError
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import digests
from memrepl.storage.items import LocalWrite
from memrepl.storage.rewind import rewind_clock
from memrepl.storage.store import Store
from memrepl.sync.manager import MemorySyncManager

HOUR_NS = 3600 * 10**9
TOLERANCE_NS = 60 * 10**9
TIERS = (MemoryTier.WORKING, MemoryTier.SEMANTIC)


def fast_wall() -> int:
    return time.time_ns() + HOUR_NS


def manager(store: Store) -> MemorySyncManager:
    made = MemorySyncManager(store.node_id)
    for tier in TIERS:
        made.register_memory_tier(tier, store.tier(tier))
    return made


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def state(path: Path, table: str) -> list[tuple[object, ...]]:
    return rows(
        path,
        f"SELECT item_id, content, deleted, version_origin, whole_origin FROM {table} "
        "ORDER BY modified_at",
    )


def pass_everything(source: Store, target: Store) -> int:
    """Every change of ``source`` applied on ``target`` (batch by batch); the items sent."""
    sender, receiver = manager(source), manager(target)
    sent = 0
    for tier in TIERS:
        since = 0
        while True:
            batch = sender.create_delta_batch(tier, target.node_id, since_timestamp=since)
            assert batch.cursor is not None
            if not batch.items and batch.cursor <= since:
                break
            receiver.apply_sync_batch(batch)
            sent += len(batch.items)
            since = batch.cursor
    return sent


def contents(store: Store, tier: MemoryTier) -> list[tuple[str, object, bool]]:
    found = store.tier(tier).get_modified_since(0)
    return sorted((r["item_id"], r["content"], r["deleted"]) for r in found)


@pytest.fixture
def skewed(tmp_path: Path) -> tuple[Path, Path]:
    """f wrote for a while with a wall clock an hour fast (merges, updates, deletes, items it got
    from h); h, whose clock is right, has its own items and refuses f's."""
    f_path, h_path = tmp_path / "f.db", tmp_path / "h.db"
    with memrepl.open(h_path, node_id="h") as h:
        h.working.write_many([LocalWrite.add(f"h-{i}", {"by": "h", "i": i}) for i in range(5)])
        h.semantic.add("shared", {"kind": "concept", "by": "h"})
    with (
        memrepl.open(f_path, node_id="f", wall=fast_wall) as f,
        memrepl.open(h_path, node_id="h") as h,
    ):
        pass_everything(h, f)
        f.working.write_many([LocalWrite.add(f"f-{i}", {"by": "f", "i": i}) for i in range(5)])
        f.working.merge("h-1", {"touched": "by f"})
        f.working.update("f-2", {"by": "f", "updated": True})
        f.working.delete("f-3")
        f.working.add("filed", {"by": "f"}, namespace=("users", "alice"))
        f.semantic.merge("shared", {"seen_by": "f"})
        with pytest.raises(ClockSkewError):
            pass_everything(f, h)
    return f_path, h_path


def found_by(store: Store, word: str) -> list[str]:
    return sorted(hit.item_id for hit in store.search(word, tiers=TIERS, limit=100))


def index_entries(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "CREATE VIRTUAL TABLE temp.entries USING fts5vocab(main, working_items_fts, instance)"
        )
        return conn.execute("SELECT term, doc, offset FROM entries ORDER BY 1, 2, 3").fetchall()
    finally:
        conn.close()


def test_a_rewound_clock_replicates_again_at_once(skewed: tuple[Path, Path]) -> None:
    f_path, h_path = skewed
    before = {table: state(f_path, table) for table in ("working_items", "semantic_items")}
    with memrepl.open(f_path, node_id="f") as f:
        found_before = {word: found_by(f, word) for word in ("f", "h", "touched")}
        wall = time.time_ns()
        with f.write() as conn:
            done = rewind_clock(conn, "f", wall_ns=wall, tolerance_ns=TOLERANCE_NS)
        assert done.before_ns > wall + HOUR_NS - 10**9
        assert done.base_ns == wall + TOLERANCE_NS
        assert done.after_ns == done.base_ns + done.stamps
        # Every row f changed while its clock was fast: its six, the five from h, "shared".
        assert done.rows == 12
        # Same rows, contents and order of change; unique positions, none above the clock.
        for table, old in before.items():
            assert state(f_path, table) == old
        positions = [m for (m,) in rows(f_path, "SELECT modified_at FROM working_items")]
        assert len(set(positions)) == len(positions) and max(positions) <= done.after_ns
        # The anti-entropy digests follow the re-stamped rows, and so does the keyword index.
        with f.read() as conn:
            for tier in TIERS:
                assert digests.find_errors(conn, f.tier(tier).spec) == {}
        assert {word: found_by(f, word) for word in found_before} == found_before
        rewound = index_entries(f_path)
        f.rebuild_indexes()
        assert index_entries(f_path) == rewound
        # h accepts everything now, and the two converge.
        with memrepl.open(h_path, node_id="h") as h:
            assert pass_everything(f, h) > 0
            pass_everything(h, f)
            for tier in TIERS:
                assert contents(f, tier) == contents(h, tier)
            assert h.working.get_by_id("h-1")["content"] == {"by": "h", "i": 1, "touched": "by f"}
            assert h.working.get_by_id("filed")["namespace"] == ("users", "alice")
        # A new write is stamped just above the rewound clock, not an hour ahead.
        record = f.working.add("later", {"v": 1})
        assert done.after_ns < record["modified_at"] <= time.time_ns() + TOLERANCE_NS + 10**9


def test_a_rewind_is_refused_when_a_peer_may_hold_the_stamps(skewed: tuple[Path, Path]) -> None:
    f_path, _ = skewed
    with memrepl.open(f_path, node_id="f") as f:
        (last,) = rows(f_path, "SELECT clock_last_ns FROM node")[0]
        manager(f).update_sync_vector(MemoryTier.WORKING, "h", int(last))  # type: ignore[call-overload]
        dump = list(sqlite3.connect(f_path).iterdump())
        with pytest.raises(ClockRewindError, match="peer 'h' has acknowledged"), f.write() as conn:
            rewind_clock(conn, "f", wall_ns=time.time_ns(), tolerance_ns=TOLERANCE_NS)
        assert list(sqlite3.connect(f_path).iterdump()) == dump


def test_a_rewind_is_refused_when_another_node_is_ahead_too(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    with memrepl.open(tmp_path / "g.db", node_id="g", wall=fast_wall) as g:
        g.working.add("from-g", {"v": 1})
        with memrepl.open(path, node_id="f", wall=fast_wall) as f:
            pass_everything(g, f)
    with (
        memrepl.open(path, node_id="f") as f,
        pytest.raises(ClockRewindError, match="node 'g'"),
        f.write() as conn,
    ):
        rewind_clock(conn, "f", wall_ns=time.time_ns(), tolerance_ns=TOLERANCE_NS)


def test_nothing_to_rewind_when_the_clock_is_right(tmp_path: Path) -> None:
    with memrepl.open(tmp_path / "a.db", node_id="a") as store:
        store.working.add("x", {"v": 1})
        with store.write() as conn:
            done = rewind_clock(conn, "a", wall_ns=time.time_ns(), tolerance_ns=TOLERANCE_NS)
    assert (done.stamps, done.rows, done.before_ns) == (0, 0, done.after_ns)
