"""Tier digests: kept equal to a fresh computation from the rows by every write, and filled by
migration 0004 for an existing store."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memrepl
from memrepl.merge import ItemState, Version
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import digests
from memrepl.storage.items import RemoteItem, apply_remote_states, forget_items
from memrepl.storage.store import Store
from memrepl.sync import tombstones

from .conftest import subprocess_env

IDS = [f"item-{n}" for n in range(8)]
TIERS = list(MemoryTier)

op = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(TIERS), st.sampled_from(IDS), st.integers(0, 3)),
    st.tuples(st.just("merge"), st.sampled_from(TIERS), st.sampled_from(IDS), st.integers(0, 3)),
    st.tuples(st.just("update"), st.sampled_from(TIERS), st.sampled_from(IDS), st.integers(0, 3)),
    st.tuples(st.just("delete"), st.sampled_from(TIERS), st.sampled_from(IDS), st.just(0)),
    st.tuples(st.just("remote"), st.sampled_from(TIERS), st.sampled_from(IDS), st.integers(0, 3)),
    st.tuples(st.just("forget"), st.sampled_from(TIERS), st.sampled_from(IDS), st.just(0)),
    st.tuples(st.just("purge"), st.sampled_from(TIERS), st.just(""), st.just(0)),
)


def recomputed_equals_maintained(store: Store) -> None:
    with store.read() as conn:
        for tier in TIERS:
            spec = store.tier(tier).spec
            # (A bucket emptied by deletes keeps a (0, 0) row: the same as no row.)
            assert digests.find_errors(conn, spec) == {}


def apply(store: Store, step: tuple[str, MemoryTier, str, int], n: int) -> None:
    kind, tier, item_id, value = step
    memory = store.tier(tier)
    live = memory.get_by_id(item_id) if item_id else None
    if kind == "add" and live is None:
        memory.add(item_id, {"v": value, "episode_id": "e", "kind": "concept"})
    elif kind == "merge":
        memory.merge(item_id, {f"f{value}": n})
    elif kind == "update" and live is not None:
        memory.update(item_id, {"v": value, "n": n})
    elif kind == "delete" and live is not None:
        memory.delete(item_id)
    elif kind == "remote":
        # A state from another node, merged as an applied batch merges it.
        stamp = 1_000 + n * 10 + value
        state = ItemState(
            {"remote": value, "b": 1, "a": 2},
            Version(stamp, "node-z"),
            False,
            {},
            {"node-z": stamp},
        )
        with store.write() as conn, store.stamping(conn) as clock:
            apply_remote_states(
                conn, memory.spec, clock, [RemoteItem(item_id, state)], from_peer="node-z"
            )
    elif kind == "forget":
        with store.write() as conn:
            forget_items(conn, memory.spec, [item_id])
    elif kind == "purge":
        with store.write() as conn:
            tombstones.purge(conn, memory.spec, grace_ns=0, now_ns=2**62)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(op, min_size=1, max_size=30), capacity=st.sampled_from([None, 3]))
def test_maintained_digests_equal_a_fresh_computation(
    steps: list[tuple[str, MemoryTier, str, int]], capacity: int | None
) -> None:
    # Local writes, applied states, forgetting, purges and (capacity 3) working-memory
    # eviction, in any order: the digests kept by the writes equal those of the rows.
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "node.db"
        with memrepl.open(path, node_id="node-a", working_capacity=capacity) as store:
            for n, step in enumerate(steps):
                apply(store, step, n)
            recomputed_equals_maintained(store)


def test_a_hand_edit_is_found_and_corrected(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    with memrepl.open(path, node_id="node-a") as store:
        for n in range(30):
            store.episodic.add(f"e{n}", {"n": n})
    with sqlite3.connect(path) as conn:
        conn.execute("""UPDATE episodic_items SET content = '{"n": -1}' WHERE item_id = 'e1'""")
        conn.execute("DELETE FROM episodic_items WHERE item_id = 'e2'")
    with memrepl.open(path, node_id="node-a") as store:
        spec = store.episodic.spec
        with store.read() as conn:
            errors = digests.find_errors(conn, spec)
        assert set(errors) == {digests.bucket_of("e1"), digests.bucket_of("e2")}
        # Later writes keep the error as it is: a correction measured now stays right.
        store.episodic.update("e1", {"n": 1})
        store.episodic.add("e2", {"n": 2})
        with store.read() as conn:
            assert digests.find_errors(conn, spec) == errors
        with store.write() as conn:
            digests.correct(conn, spec.tier, errors)
        recomputed_equals_maintained(store)


def alembic(path: Path, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"db={path}", *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr


def test_upgrading_a_populated_0003_store_fills_the_digests(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    with memrepl.open(path, node_id="node-a") as store:
        for tier in TIERS:
            memory = store.tier(tier)
            for n in range(40):
                memory.add(f"{tier.name}-{n}", {"n": n, "kind": "concept"})
            memory.merge(f"{tier.name}-1", {"extra": True})
            memory.delete(f"{tier.name}-2")
        with store.read() as conn:
            maintained = {tier: digests.stored(conn, tier) for tier in TIERS}
    alembic(path, "downgrade", "0003")
    with sqlite3.connect(path) as conn:
        found = conn.execute("SELECT name FROM sqlite_master WHERE name = 'tier_digests'")
        assert found.fetchall() == []
    alembic(path, "upgrade", "head")
    with memrepl.open(path, node_id="node-a") as store, store.read() as conn:
        for tier in TIERS:
            fresh = digests.recompute(conn, store.tier(tier).spec)
            assert digests.stored(conn, tier) == fresh == maintained[tier]
            assert digests.root(conn, tier).items == 40
