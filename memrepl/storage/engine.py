"""SQLAlchemy engines for a memrepl store: the SQLite pragmas and who emits BEGIN.

The rule that keeps it right (ARCHITECTURE.md, "Storage"): SQLAlchemy, not the ``sqlite3``
driver, decides where a transaction starts. On connect the DBAPI connection gets
``isolation_level = None`` (the driver stops emitting its own implicit BEGIN) and the pragmas
(WAL, ``synchronous``, ``busy_timeout``, ``foreign_keys``); the ``begin`` listener then emits
``BEGIN IMMEDIATE`` on connections of a write engine (:func:`write_engine`, the execution option
``memrepl_write``) and a plain deferred ``BEGIN`` otherwise -- the SQLAlchemy recipe for
pysqlite and aiosqlite. A write transaction therefore holds SQLite's write lock from its first
statement: what it reads (the clock, the rows it merges into) cannot change under it, and a
second writer waits up to ``busy_timeout`` instead of failing on upgrade from reader to writer.

The same two listener functions serve the synchronous engine and ``AsyncEngine.sync_engine``.
In-memory databases use one shared connection (``StaticPool``): every checkout must see the
same database.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from sqlalchemy import URL, event, make_url
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import create_async_engine as sa_create_async_engine
from sqlalchemy.pool import StaticPool

from memrepl.errors import StoreError
from memrepl.storage import driver

#: The execution option that marks a write engine: its transactions start with BEGIN IMMEDIATE.
WRITE_OPTION = "memrepl_write"

#: SQLite's ``synchronous`` settings. FULL (the default) makes every commit durable in WAL mode.
SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

DEFAULT_SYNCHRONOUS = "FULL"
DEFAULT_BUSY_TIMEOUT_MS = 5000

#: The path that names a private in-memory database.
MEMORY = ":memory:"

DBAPIConnectionHook = Callable[[Any, Any], None]


def _check_settings(synchronous: str, busy_timeout_ms: int) -> str:
    mode = synchronous.upper()
    if mode not in SYNCHRONOUS_MODES:
        raise StoreError(
            f"opening a store: synchronous={synchronous!r} is not one of {SYNCHRONOUS_MODES}"
        )
    if not isinstance(busy_timeout_ms, int) or busy_timeout_ms < 0:
        raise StoreError(
            f"opening a store: busy_timeout_ms must be a non-negative int, not {busy_timeout_ms!r}"
        )
    return mode


def _connect_listener(synchronous: str, busy_timeout_ms: int) -> DBAPIConnectionHook:
    """The ``connect`` listener: take BEGIN away from the driver and set the pragmas."""

    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching to WAL may itself have to wait for a lock.
            cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms:d}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    return on_connect


def _on_begin(conn: Connection) -> None:
    """The ``begin`` listener: BEGIN IMMEDIATE on a write engine, a deferred BEGIN otherwise."""
    # On the driver (see .driver): it runs once per transaction.
    if conn.get_execution_options().get(WRITE_OPTION):
        driver.execute(conn, "BEGIN IMMEDIATE")
    else:
        driver.execute(conn, "BEGIN")


def _install(engine: Engine, synchronous: str, busy_timeout_ms: int) -> None:
    event.listen(engine, "connect", _connect_listener(synchronous, busy_timeout_ms))
    event.listen(engine, "begin", _on_begin)


def database_url(path: str | os.PathLike[str], *, driver: str = "pysqlite") -> URL:
    """The SQLAlchemy URL of the SQLite file ``path`` (``":memory:"``: a private in-memory one)."""
    drivername = "sqlite" if driver == "pysqlite" else f"sqlite+{driver}"
    if os.fspath(path) == MEMORY:
        return URL.create(drivername)
    return URL.create(drivername, database=os.path.abspath(os.fspath(path)))


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", MEMORY)


def create_engine_from_url(
    url: str | URL,
    *,
    synchronous: str = DEFAULT_SYNCHRONOUS,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
) -> Engine:
    """A synchronous engine for a ``sqlite://`` URL, with memrepl's pragmas and BEGIN handling."""
    mode = _check_settings(synchronous, busy_timeout_ms)
    url = make_url(url)
    if url.get_backend_name() != "sqlite":
        raise StoreError(f"opening a store: only SQLite databases are supported, not {url!r}")
    kwargs: dict[str, Any] = {}
    if _is_memory(url):
        kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    engine = sa_create_engine(url, **kwargs)
    _install(engine, mode, busy_timeout_ms)
    return engine


def create_engine(
    path: str | os.PathLike[str],
    *,
    synchronous: str = DEFAULT_SYNCHRONOUS,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
) -> Engine:
    """A synchronous (pysqlite) engine for the SQLite file ``path``."""
    return create_engine_from_url(
        database_url(path), synchronous=synchronous, busy_timeout_ms=busy_timeout_ms
    )


def create_async_engine(
    path: str | os.PathLike[str],
    *,
    synchronous: str = DEFAULT_SYNCHRONOUS,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
) -> AsyncEngine:
    """An asyncio (aiosqlite) engine for ``path``, with the same listeners on its sync engine."""
    mode = _check_settings(synchronous, busy_timeout_ms)
    url = database_url(path, driver="aiosqlite")
    kwargs: dict[str, Any] = {}
    if _is_memory(url):
        kwargs = {"poolclass": StaticPool}
    engine = sa_create_async_engine(url, **kwargs)
    _install(engine.sync_engine, mode, busy_timeout_ms)
    return engine


def write_engine(engine: Engine) -> Engine:
    """A copy of ``engine`` (same pool) whose transactions start with BEGIN IMMEDIATE."""
    return engine.execution_options(**{WRITE_OPTION: True})


def async_write_engine(engine: AsyncEngine) -> AsyncEngine:
    """The asyncio twin of :func:`write_engine`."""
    return engine.execution_options(**{WRITE_OPTION: True})
