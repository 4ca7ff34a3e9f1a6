"""The engine: settings on every connection, writes that hold the store's write lock from their
first statement (SQLite's BEGIN IMMEDIATE, PostgreSQL's advisory lock), reads that see a
snapshot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from memrepl.storage import Store
from memrepl.storage.engine import create_async_engine, create_engine, write_engine

from ..files import query
from .sqltrace import statements_run


def pragmas(store: Store) -> dict[str, object]:
    with store.read() as conn:
        return {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }


@pytest.mark.sqlite_only
def test_default_pragmas(store: Store) -> None:
    assert pragmas(store) == {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL
        "busy_timeout": 5000,
        "foreign_keys": 1,
    }


@pytest.mark.sqlite_only
def test_configured_pragmas(opener: Callable[..., Store]) -> None:
    store = opener(synchronous="normal", busy_timeout_ms=1234)
    assert pragmas(store)["synchronous"] == 1
    assert pragmas(store)["busy_timeout"] == 1234


@pytest.mark.backends("postgresql")
def test_postgresql_session_settings(opener: Callable[..., Store]) -> None:
    """busy_timeout_ms is how long a writer waits for the write lock (lock_timeout);
    synchronous FULL (the default) keeps commits durable (synchronous_commit), NORMAL does not."""

    def settings(store: Store) -> tuple[str, str]:
        with store.read() as conn:
            lock = conn.exec_driver_sql("SHOW lock_timeout").scalar()
            durable = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
        return str(lock), str(durable)

    assert settings(opener()) == ("5s", "on")
    assert settings(opener(synchronous="normal", busy_timeout_ms=1234)) == ("1234ms", "off")


WRITE_BEGINS = {
    "sqlite": ["BEGIN IMMEDIATE"],
    "postgresql": [
        "BEGIN ISOLATION LEVEL READ COMMITTED",
        "SELECT pg_advisory_xact_lock(hashtextextended('memrepl write ' || current_schema(), 0))",
    ],
}
READ_BEGINS = {"sqlite": "BEGIN", "postgresql": "BEGIN ISOLATION LEVEL REPEATABLE READ"}


def test_writes_take_the_lock_first_and_reads_a_snapshot(store: Store, backend: str) -> None:
    written = statements_run(store, lambda: store.working.add("x", {}))
    assert written[: len(WRITE_BEGINS[backend])] == WRITE_BEGINS[backend]
    assert (
        statements_run(store, lambda: store.working.get_modified_since(0))[0]
        == (READ_BEGINS[backend])
    )


def test_write_transaction_holds_the_write_lock(store: Store, opener: Callable[..., Store]) -> None:
    """The lock is taken at BEGIN, before the transaction wrote anything: another store's
    writer waits for it (busy_timeout_ms), and fails when the wait is over."""
    other = opener(busy_timeout_ms=50)
    with store.write() as conn:
        conn.execute(text("SELECT 1"))
        with pytest.raises(OperationalError, match=r"locked|lock timeout"):
            other.working.add("blocked", {})
    other.working.add("after", {})
    assert store.working.get_by_id("after") is not None
    assert store.working.get_by_id("blocked") is None


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


def test_a_failed_commit_leaves_the_store_writable(
    store: Store, db_path: Path, opener: Callable[..., Store]
) -> None:
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
    opener(busy_timeout_ms=0).working.add("other", {"v": 1})  # the write lock is free
    assert query(db_path, "SELECT count(*) FROM child") == [(0,)]


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
