"""PostgreSQL through psycopg 3: the write transaction, read snapshots, and PostgreSQL's own SQL.

A store is a PostgreSQL database, or a schema of one: every statement names its tables
unqualified, so the connection's ``search_path`` (``?options=-csearch_path%3Dname`` in the URL)
picks the schema, and the locks below are per schema (``current_schema()``).

The rules that keep it right (the same guarantees SQLite's ``BEGIN IMMEDIATE`` gives,
:mod:`.sqlite`):

- **SQLAlchemy emits BEGIN, not the driver.** Connections are in psycopg's autocommit mode, so
  psycopg never opens a transaction by itself; the ``begin`` listener sends one, and
  SQLAlchemy's commit and rollback end it (psycopg sends COMMIT or ROLLBACK whenever the
  server says a transaction is open).
- **One writer at a time per store, from the first statement.** A write transaction is
  ``BEGIN ISOLATION LEVEL READ COMMITTED`` followed, in the same round trip, by
  ``pg_advisory_xact_lock`` on a key of the store (:data:`WRITE_LOCK`), held until COMMIT or
  ROLLBACK. Every memrepl writer of any process or machine takes it first, so writers take
  turns as SQLite's do, and a writer waits up to ``lock_timeout`` (the store's
  ``busy_timeout_ms``) for its turn. Why READ COMMITTED and not SERIALIZABLE: under READ
  COMMITTED each statement reads the latest committed data, and a lock holder is released only
  after its commit is visible, so once the lock is ours every statement sees every earlier
  write and no memrepl writer can commit until we do -- what we read (the clock, the rows a
  batch merges into) stays what it was until our COMMIT, with no serialization failures to
  retry. (Under REPEATABLE READ the snapshot would be taken by the lock's own statement, before
  the wait: stale.) An advisory lock, not a row lock on ``node``: it also covers the migrations
  that create the tables, and it is released by the server if the client dies.
- **Reads see one snapshot**: ``BEGIN ISOLATION LEVEL REPEATABLE READ``, like a deferred SQLite
  transaction in WAL mode, so a search or a delta reads every tier at one moment.
- **JSON stays text** (the ``content`` column is ``text``): the conflict log keeps bytes exactly
  as received, as on SQLite; filters read it as ``jsonb`` (:func:`_compile_json_kind` ...).
- **Text sorts by code point**: every text column is ``COLLATE "C"`` (:data:`memrepl.storage.
  schema.Str`), as SQLite's BINARY collation, so ranges over namespaces and ids mean the same and
  ``LIKE 'prefix%'`` can use an index.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import count
from typing import Any

from sqlalchemy import Table, Text, event, literal
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql import psycopg
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import create_async_engine as sa_create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.compiler import SQLCompiler

from memrepl.storage import driver
from memrepl.storage.backends import Backend, EngineSettings, postgresql_search
from memrepl.storage.backends.sqlite import WRITE_OPTION
from memrepl.storage.portable import JsonCompare, JsonIs, JsonSize

#: The advisory lock key of a store's write transactions, and of its running node (held for the
#: node's life on a connection of its own): a 64-bit hash of a name and the schema, so two stores
#: in two schemas of one database never wait on each other.
WRITE_LOCK = "hashtextextended('memrepl write ' || current_schema(), 0)"
NODE_LOCK = "hashtextextended('memrepl node ' || current_schema(), 0)"

BEGIN_WRITE = f"BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ"

#: Rows a scan fetches from its server-side cursor at a time.
SCAN_ROWS = 2000

_scan_names = count()


def _synchronous_commit(synchronous: str) -> str:
    return "on" if synchronous in ("FULL", "EXTRA") else "off"


def _on_connect(settings: EngineSettings) -> Any:
    """The ``connect`` listener: autocommit (BEGIN is ours), the lock wait, durability."""

    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.autocommit = True
        cursor = dbapi_connection.cursor()
        try:
            # lock_timeout 0 would mean "wait forever"; busy_timeout 0 means "do not wait".
            cursor.execute(
                f"SET lock_timeout = {max(settings.busy_timeout_ms, 1):d}; "
                f"SET synchronous_commit = {_synchronous_commit(settings.synchronous)}"
            )
        finally:
            cursor.close()

    return on_connect


def _run(conn: Connection, sql: str) -> None:
    # No parameters: psycopg sends the text as one simple query, several statements in one
    # round trip.
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
    except Exception as exc:
        driver.raise_wrapped(conn, sql, (), exc)
        raise
    finally:
        cursor.close()


def _on_begin(conn: Connection) -> None:
    """The ``begin`` listener: a write takes the store's write lock first thing."""
    _run(conn, BEGIN_WRITE if conn.get_execution_options().get(WRITE_OPTION) else BEGIN_READ)


def _install(engine: Engine, settings: EngineSettings) -> None:
    event.listen(engine, "connect", _on_connect(settings))
    event.listen(engine, "begin", _on_begin)


# -- the portable constructs (memrepl.storage.portable) in PostgreSQL's SQL ----------------------
# greatest() and least() are PostgreSQL's own names: their default rendering serves.


def _json_field(
    element: JsonIs | JsonCompare | JsonSize,
    compiler: SQLCompiler,
    kw: Any,
    *,
    as_text: bool = False,
) -> str:
    """The field at the element's path, from the stored text read as jsonb (``#>``; ``#>>``
    for its text). A missing key, or a path through a non-object, gives NULL."""
    content = compiler.process(element.clauses, **kw)
    # An array position is its number as text (what #> takes for an array's element).
    parts = ", ".join(compiler.process(literal(str(part), Text()), **kw) for part in element.path)
    operator = "#>>" if as_text else "#>"
    return f"(CAST({content} AS JSONB) {operator} ARRAY[{parts}]::TEXT[])"


#: JsonIs's kinds as conditions on a jsonb value.
_JSON_KINDS = {
    "string": "jsonb_typeof({}) = 'string'",
    "number": "jsonb_typeof({}) = 'number'",
    "true": "{} = 'true'::jsonb",
    "false": "{} = 'false'::jsonb",
    "null": "jsonb_typeof({}) = 'null'",
    "array": "jsonb_typeof({}) = 'array'",
    "object": "jsonb_typeof({}) = 'object'",
    "absent": "{} IS NULL",
}


@compiles(JsonIs, "postgresql")
def _json_is(element: JsonIs, compiler: SQLCompiler, **kw: Any) -> str:
    return _JSON_KINDS[element.kind].format(_json_field(element, compiler, kw))


@compiles(JsonCompare, "postgresql")
def _json_compare(element: JsonCompare, compiler: SQLCompiler, **kw: Any) -> str:
    operand = compiler.process(literal(element.operand), **kw)
    if isinstance(element.operand, str):
        # The string's text, compared by code point as on SQLite.
        field = _json_field(element, compiler, kw, as_text=True)
        return f'{field} COLLATE "C" {element.operator} {operand}'
    field = _json_field(element, compiler, kw)
    if isinstance(element.operand, float):
        # As SQLite compares a REAL: both sides as doubles (an integer past 64 bits, bound as a
        # float, then equals the stored integer it stands for). Only a number is cast: SQL does
        # not promise to test the field's kind first.
        text = _json_field(element, compiler, kw, as_text=True)
        number = f"CASE WHEN jsonb_typeof({field}) = 'number' THEN CAST({text} AS FLOAT8) END"
        return f"({number}) {element.operator} CAST({operand} AS FLOAT8)"
    # jsonb numbers compare by value (1 = 1.0); a jsonb comparison never fails on another kind.
    return f"{field} {element.operator} to_jsonb(CAST({operand} AS NUMERIC))"


@compiles(JsonSize, "postgresql")
def _json_size(element: JsonSize, compiler: SQLCompiler, **kw: Any) -> str:
    field = _json_field(element, compiler, kw)
    # Guarded by its kind: the size functions raise on a value of another kind, and SQL does
    # not promise to evaluate the JsonIs beside this one first.
    if element.kind == "array":
        size = f"CASE WHEN jsonb_typeof({field}) = 'array' THEN jsonb_array_length({field}) END"
    else:
        size = (
            f"(SELECT count(*) FROM jsonb_object_keys(CASE WHEN jsonb_typeof({field}) = "
            f"'object' THEN {field} END))"
        )
    return f"{size} = {element.size:d}"


class PostgreSQLBackend(Backend):
    """PostgreSQL (12 and later) through psycopg 3, sync and asyncio."""

    name = "postgresql"
    # Positional ``%s`` placeholders: the driver statements are run with tuples.
    driver_dialect = psycopg.dialect(paramstyle="format")  # type: ignore[no-untyped-call]
    keyword_index = postgresql_search

    def insert(self, table: Table) -> Any:
        return pg_insert(table)

    def create_engine(self, url: URL, settings: EngineSettings) -> Engine:
        engine = sa_create_engine(url)
        _install(engine, settings)
        return engine

    def create_async_engine(self, url: URL, settings: EngineSettings) -> AsyncEngine:
        engine = sa_create_async_engine(url)
        _install(engine.sync_engine, settings)
        return engine

    def has_table(self, conn: Connection, name: str) -> bool:
        rows = driver.execute(conn, "SELECT to_regclass(%s) IS NOT NULL", (name,))
        return bool(rows[0][0])

    def column_names(self, conn: Connection, table: str) -> list[str]:
        rows = driver.execute(
            conn,
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (table,),
        )
        return [str(name) for (name,) in rows]

    def scan(self, conn: Connection, sql: str, parameters: Sequence[Any]) -> Iterator[Any]:
        # A server-side cursor (inside the caller's transaction): psycopg's ordinary cursor
        # would fetch every row of the table before the first one is seen.
        cursor = conn.connection.dbapi_connection.cursor(  # type: ignore[union-attr]
            f"memrepl_scan_{next(_scan_names)}"
        )
        try:
            try:
                cursor.execute(sql, parameters)
            except Exception as exc:
                driver.raise_wrapped(conn, sql, parameters, exc)
                raise
            while rows := cursor.fetchmany(SCAN_ROWS):
                yield from rows
        finally:
            cursor.close()

    def explain(self, conn: Connection, sql: str, parameters: Sequence[Any] = ()) -> list[str]:
        return [str(row[0]) for row in driver.execute(conn, f"EXPLAIN {sql}", parameters)]

    def commit_version(self, dbapi_connection: Any) -> int:
        # Every write transaction that changes rows stamps them, and saves the node's clock
        # before it commits: the clock moves exactly when such a transaction committed.
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT clock_last_ns FROM node WHERE id = 1")
            row = cursor.fetchone()
            return int(row[0]) if row is not None else 0
        finally:
            cursor.close()

    def node_lock(self, url: URL) -> NodeLockSession:
        return NodeLockSession(url)


#: ``application_name`` is at most 63 bytes: what a holder's description is cut to.
_APPLICATION_NAME_BYTES = 63

_HOLDER = f"""
SELECT a.application_name, a.client_addr::text FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = {NODE_LOCK}
"""


class NodeLockSession:
    """The node lock of a store on PostgreSQL: a session-level advisory lock (:data:`NODE_LOCK`)
    held on a connection of its own for as long as the node runs. The server drops it when that
    connection ends, however the process ended (SIGKILL included: the kernel closes the socket).
    The holder describes itself in its connection's ``application_name``, which others read in
    ``pg_stat_activity`` (cut to 63 bytes)."""

    def __init__(self, url: URL) -> None:
        self._engine = sa_create_engine(url, poolclass=NullPool)
        self._connection: Any = None

    def try_acquire(self, description: str) -> bool:
        """Take the lock (without waiting) and describe this process; False if another holds it."""
        if self._connection is not None:
            return True
        connection = self._engine.raw_connection()
        try:
            connection.driver_connection.autocommit = True  # type: ignore[union-attr]
            cursor = connection.cursor()
            cursor.execute(f"SELECT pg_try_advisory_lock({NODE_LOCK})")
            row = cursor.fetchone()
            cursor.close()
            taken = bool(row and row[0])
        except BaseException:
            connection.close()
            raise
        if not taken:
            connection.close()
            return False
        self._connection = connection
        self.describe(description)
        return True

    def describe(self, description: str) -> None:
        """Say who holds the lock (this process)."""
        if self._connection is None:
            return
        text = description.encode()[:_APPLICATION_NAME_BYTES].decode(errors="ignore")
        cursor = self._connection.cursor()
        cursor.execute("SELECT set_config('application_name', %s, false)", (text,))
        cursor.close()

    def holder(self) -> str | None:
        """Who holds the lock, as the holder described itself (and from where); None: nobody."""
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute(_HOLDER)
            row = cursor.fetchone()
            cursor.close()
        finally:
            connection.close()
        if row is None:
            return None
        name, address = row
        where = f" from {address.split('/')[0]}" if address else ""
        return f"{name or 'a process'}{where}"

    def release(self) -> None:
        """Drop the lock: its connection closed (idempotent)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
        self._engine.dispose()


BACKEND = PostgreSQLBackend()
