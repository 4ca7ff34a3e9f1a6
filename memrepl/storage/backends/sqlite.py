"""SQLite: the pragmas, who emits BEGIN, and SQLite's own statements.

The rule that keeps it right (ARCHITECTURE.md, "Storage"): SQLAlchemy, not the ``sqlite3``
driver, decides where a transaction starts. On connect the DBAPI connection gets
``isolation_level = None`` (the driver stops emitting its own implicit BEGIN) and the pragmas
(WAL, ``synchronous``, ``busy_timeout``, ``foreign_keys``); the ``begin`` listener then emits
``BEGIN IMMEDIATE`` on connections of a write engine (the execution option
:data:`memrepl.storage.engine.WRITE_OPTION`) and a plain deferred ``BEGIN`` otherwise -- the
SQLAlchemy recipe for pysqlite and aiosqlite. A write transaction therefore holds SQLite's write
lock from its first statement: what it reads (the clock, the rows it merges into) cannot change
under it, and a second writer waits up to ``busy_timeout`` instead of failing on upgrade from
reader to writer. A read transaction sees one snapshot (WAL) from its first read.

The same two listener functions serve the synchronous engine and ``AsyncEngine.sync_engine``.
In-memory databases use one shared connection (``StaticPool``): every checkout must see the
same database.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Table, Text, event, literal
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import create_async_engine as sa_create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.compiler import SQLCompiler

from memrepl.storage import driver
from memrepl.storage.backends import Backend, EngineSettings
from memrepl.storage.portable import JsonCompare, JsonIs, JsonSize, greatest, least

#: The path that names a private in-memory database.
MEMORY = ":memory:"
#: The execution option that marks a write engine (memrepl.storage.engine.WRITE_OPTION).
WRITE_OPTION = "memrepl_write"


def is_memory(url: URL) -> bool:
    """Whether ``url`` names a private in-memory database."""
    return url.database in (None, "", MEMORY)


def _on_connect(settings: EngineSettings) -> Any:
    """The ``connect`` listener: take BEGIN away from the driver and set the pragmas."""

    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching to WAL may itself have to wait for a lock.
            cursor.execute(f"PRAGMA busy_timeout = {settings.busy_timeout_ms:d}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {settings.synchronous}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    return on_connect


def _on_begin(conn: Connection) -> None:
    """The ``begin`` listener: BEGIN IMMEDIATE on a write engine, a deferred BEGIN otherwise."""
    # On the driver (see memrepl.storage.driver): it runs once per transaction.
    if conn.get_execution_options().get(WRITE_OPTION):
        driver.execute(conn, "BEGIN IMMEDIATE")
    else:
        driver.execute(conn, "BEGIN")


def _install(engine: Engine, settings: EngineSettings) -> None:
    event.listen(engine, "connect", _on_connect(settings))
    event.listen(engine, "begin", _on_begin)


# -- the portable constructs (memrepl.storage.portable) in SQLite's SQL --------------------------


@compiles(greatest, "sqlite")
def _greatest(element: greatest, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite's max() with two or more arguments is a scalar function.
    return f"max({compiler.process(element.clauses, **kw)})"


@compiles(least, "sqlite")
def _least(element: least, compiler: SQLCompiler, **kw: Any) -> str:
    return f"min({compiler.process(element.clauses, **kw)})"


def _json_field(
    element: JsonIs | JsonCompare | JsonSize, compiler: SQLCompiler, kw: Any
) -> tuple[str, str]:
    """The content column and the JSON path (``$."a"[0]``, bound) of a JSON condition."""
    content = compiler.process(element.clauses, **kw)
    path = "$" + "".join(
        f"[{part}]" if isinstance(part, int) else f'."{part}"' for part in element.path
    )
    return content, compiler.process(literal(path, Text()), **kw)


#: JsonIs's kinds as SQLite's json_type() names them.
_JSON_TYPES = {
    "string": "= 'text'",
    "number": "IN ('integer', 'real')",
    "true": "= 'true'",
    "false": "= 'false'",
    "null": "= 'null'",
    "array": "= 'array'",
    "object": "= 'object'",
    "absent": "IS NULL",
}


@compiles(JsonIs, "sqlite")
def _json_is(element: JsonIs, compiler: SQLCompiler, **kw: Any) -> str:
    content, path = _json_field(element, compiler, kw)
    return f"json_type({content}, {path}) {_JSON_TYPES[element.kind]}"


@compiles(JsonCompare, "sqlite")
def _json_compare(element: JsonCompare, compiler: SQLCompiler, **kw: Any) -> str:
    content, path = _json_field(element, compiler, kw)
    operand = compiler.process(literal(element.operand), **kw)
    # json_extract gives a JSON string as text and a number as a number; text compares by
    # bytes (BINARY), that is by code point.
    return f"json_extract({content}, {path}) {element.operator} {operand}"


class SQLiteBackend(Backend):
    """SQLite through pysqlite (sync) and aiosqlite (asyncio)."""

    name = "sqlite"
    driver_dialect = pysqlite.dialect()

    def insert(self, table: Table) -> Any:
        return sqlite_insert(table)

    def create_engine(self, url: URL, settings: EngineSettings) -> Engine:
        kwargs: dict[str, Any] = {}
        if is_memory(url):
            kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        engine = sa_create_engine(url.set(drivername="sqlite"), **kwargs)
        _install(engine, settings)
        return engine

    def create_async_engine(self, url: URL, settings: EngineSettings) -> AsyncEngine:
        kwargs: dict[str, Any] = {}
        if is_memory(url):
            kwargs = {"poolclass": StaticPool}
        engine = sa_create_async_engine(url.set(drivername="sqlite+aiosqlite"), **kwargs)
        _install(engine.sync_engine, settings)
        return engine

    def has_table(self, conn: Connection, name: str) -> bool:
        rows = driver.execute(
            conn, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        )
        return bool(rows)

    def column_names(self, conn: Connection, table: str) -> list[str]:
        return [str(row[1]) for row in driver.execute(conn, f"PRAGMA table_info({table})")]

    def scan(self, conn: Connection, sql: str, parameters: Sequence[Any]) -> Iterator[Any]:
        # SQLite steps through the rows as the cursor is read: nothing holds them all.
        return driver.fetch_in_chunks(conn, sql, parameters)

    def explain(self, conn: Connection, sql: str, parameters: Sequence[Any] = ()) -> list[str]:
        rows = driver.execute(conn, f"EXPLAIN QUERY PLAN {sql}", parameters)
        return [str(row[3]) for row in rows]

    def commit_version(self, dbapi_connection: Any) -> int:
        # data_version changes whenever ANOTHER connection committed (any process, including
        # this one's other pooled connections); per connection, hence the kept connection.
        cursor = dbapi_connection.cursor()
        try:
            return int(cursor.execute("PRAGMA data_version").fetchone()[0])
        finally:
            cursor.close()


BACKEND = SQLiteBackend()


@compiles(JsonSize, "sqlite")
def _json_size(element: JsonSize, compiler: SQLCompiler, **kw: Any) -> str:
    content, path = _json_field(element, compiler, kw)
    if element.kind == "array":
        return f"json_array_length({content}, {path}) = {element.size:d}"
    return f"(SELECT count(*) FROM json_each({content}, {path})) = {element.size:d}"
