"""The engine: pragmas on every connection, BEGIN IMMEDIATE for writes, deferred BEGIN for reads."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from memrepl.storage import Store
from memrepl.storage.engine import create_async_engine, create_engine, write_engine

from .sqltrace import statements_run


def pragmas(store: Store) -> dict[str, object]:
    with store.read() as conn:
        return {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }


def test_default_pragmas(store: Store) -> None:
    assert pragmas(store) == {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL
        "busy_timeout": 5000,
        "foreign_keys": 1,
    }


def test_configured_pragmas(opener: Callable[..., Store]) -> None:
    store = opener(synchronous="normal", busy_timeout_ms=1234)
    assert pragmas(store)["synchronous"] == 1
    assert pragmas(store)["busy_timeout"] == 1234


def test_writes_begin_immediate_and_reads_deferred(store: Store) -> None:
    assert statements_run(store, lambda: store.working.add("x", {}))[0] == "BEGIN IMMEDIATE"
    assert statements_run(store, lambda: store.working.get_modified_since(0))[0] == "BEGIN"


def test_write_transaction_holds_the_write_lock(store: Store, db_path: Path) -> None:
    other = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        with store.write() as conn:
            conn.execute(text("SELECT 1"))
            # The lock is taken at BEGIN, before this transaction wrote anything.
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_reads_see_a_snapshot(store: Store, db_path: Path) -> None:
    store.working.add("x", {"v": 1})
    with store.read() as conn:
        first = conn.exec_driver_sql("SELECT count(*) FROM working_items").scalar()
        store.working.add("y", {"v": 1})
        again = conn.exec_driver_sql("SELECT count(*) FROM working_items").scalar()
    assert first == again == 1


def test_rollback_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError), store.write() as conn:
        conn.exec_driver_sql("UPDATE node SET clock_last_ns = 1")
        raise RuntimeError
    with store.read() as conn:
        assert conn.exec_driver_sql("SELECT clock_last_ns FROM node").scalar() != 1


def test_engines_on_paths(tmp_path: Path) -> None:
    engine = create_engine(tmp_path / "e.db")
    try:
        with write_engine(engine).begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x)")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


async def test_async_engine_has_the_same_listeners(tmp_path: Path) -> None:
    engine = create_async_engine(tmp_path / "a.db", synchronous="NORMAL")
    try:
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 1
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 5000
    finally:
        await engine.dispose()


def test_closed_store_refuses_use(opener: Callable[..., Store]) -> None:
    from memrepl.errors import StoreError

    store = opener()
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.working.add("x", {})


def test_threads_share_a_store_for_writes(store: Store) -> None:
    """Writes from several threads go through the store's one write connection, one at a time:
    every write lands, and stamps stay unique."""
    import threading

    def writer(name: str) -> None:
        for n in range(50):
            store.working.add(f"{name}-{n}", {"n": n})

    threads = [threading.Thread(target=writer, args=(f"t{k}",)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with store.read() as conn:
        count, stamps = conn.exec_driver_sql(
            "SELECT count(*), count(DISTINCT modified_at) FROM working_items"
        ).one()
    assert count == stamps == 200


def test_a_write_inside_a_write_fails_at_once(store: Store) -> None:
    """A nested write transaction is a programming error: refused at once, not a wait on the
    write lock the outer one holds; the outer transaction still commits."""
    from memrepl.errors import StoreError

    with store.write() as conn:
        conn.exec_driver_sql("UPDATE node SET created_by_version = 'outer'")
        with pytest.raises(StoreError, match="already open"), store.write():
            pass
    with store.read() as conn:
        assert conn.exec_driver_sql("SELECT created_by_version FROM node").scalar() == "outer"


def test_a_failed_commit_leaves_the_store_writable(store: Store, db_path: Path) -> None:
    """A COMMIT that fails (here a deferred foreign key) can leave SQLite's transaction open on
    the store's write connection: the store must not keep it, nor the write lock."""
    from sqlalchemy.exc import IntegrityError

    with store.write() as conn:
        conn.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql(
            "CREATE TABLE child (x INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
    with pytest.raises(IntegrityError), store.write() as conn:
        conn.exec_driver_sql("INSERT INTO child VALUES (1)")
    store.working.add("after", {"v": 1})
    other = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        assert other.execute("SELECT count(*) FROM child").fetchone() == (0,)
    finally:
        other.close()


def test_close_inside_a_write_lets_it_commit(db_path: Path) -> None:
    from memrepl.storage import open as open_store

    store = open_store(db_path, node_id="node-a")
    with store.write() as conn:
        conn.exec_driver_sql("UPDATE node SET created_by_version = 'closing'")
        store.close()
    reopened = open_store(db_path, node_id="node-a")
    try:
        with reopened.read() as conn:
            assert conn.exec_driver_sql("SELECT created_by_version FROM node").scalar() == "closing"
    finally:
        reopened.close()
