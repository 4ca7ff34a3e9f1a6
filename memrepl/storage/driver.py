"""The hot statements: compiled once from Core, run on the DBAPI cursor of a SQLAlchemy connection.

Why this exists: SQLAlchemy's per-execution machinery (execution context, parameter processing,
result wrapping) costs tens of microseconds a statement -- more than SQLite takes to run the
statements every write and every applied batch runs (load the clock, load the rows, upsert them,
log conflicts, store the cursor). Those statements are built as Core constructs like every other
one, compiled ONCE per database to the driver's positional SQL (:func:`compile_statement`, with
the backend's name: ``?`` for sqlite3, ``%s`` for psycopg), and executed on the DBAPI connection
underneath the ``Connection`` (:func:`execute`, :func:`executemany`). A module that keeps such
statements caches them per backend name, and picks them with ``conn.dialect.name``.

The rule that keeps it right: SQLAlchemy still owns the connection and the transaction. These
functions run only inside a transaction SQLAlchemy began (``Store.write()``/``read()``), on that
transaction's connection, so they commit and roll back with it. Under aiosqlite (and psycopg's
async connection) the connection is SQLAlchemy's adapter, whose cursor is synchronous inside
``AsyncConnection.run_sync`` -- the same code serves both stores. Driver errors are raised as
SQLAlchemy's ``DBAPIError`` subclasses, as a Core execution would raise them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from memrepl.storage.backends import backend_named, backend_of

#: The backend the hot statements of a module are compiled for when it names none.
SQLITE = "sqlite"


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A statement compiled to the driver's SQL, with its parameter names in positional order."""

    sql: str
    keys: tuple[str, ...]
    #: The values bound when the statement was built (SQLAlchemy's own, such as OFFSET 0).
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional parameters for ``values`` (parameter name to value; a name missing
        from ``values`` takes its bound default)."""
        return tuple(values[key] if key in values else self.defaults[key] for key in self.keys)


def compile_statement(
    statement: ClauseElement, backend: str = SQLITE, **compile_kwargs: Any
) -> DriverStatement:
    """``statement`` compiled for the driver of ``backend`` (a dialect name: ``"sqlite"``,
    ``"postgresql"``), positional placeholders in ``keys`` order."""
    dialect = backend_named(backend).driver_dialect
    compiled = statement.compile(dialect=dialect, compile_kwargs=compile_kwargs)
    assert isinstance(compiled, SQLCompiler)
    keys = tuple(compiled.positiontup or ())
    defaults = {key: compiled.binds[key].value for key in keys if key in compiled.binds}
    return DriverStatement(compiled.string, keys, defaults)


def raise_wrapped(conn: Connection, sql: str, parameters: Sequence[Any], exc: Exception) -> None:
    """Raise ``exc`` (from the driver) as SQLAlchemy would: a DBAPI error as its DBAPIError."""
    dbapi = conn.dialect.loaded_dbapi
    if isinstance(exc, dbapi.Error):
        raise DBAPIError.instance(sql, parameters, exc, dbapi.Error) from exc
    raise exc


def execute(conn: Connection, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on ``conn``'s DBAPI connection; its rows as tuples (``[]`` if none)."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, parameters)
        return list(cursor.fetchall()) if cursor.description else []
    except Exception as exc:
        raise_wrapped(conn, sql, parameters, exc)
        raise
    finally:
        cursor.close()


def executemany(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> int:
    """Run one statement per row on ``conn``'s DBAPI connection; the rows changed (or -1)."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(sql, rows)
        return int(cursor.rowcount)
    except Exception as exc:
        raise_wrapped(conn, sql, rows, exc)
        raise
    finally:
        cursor.close()


def scan(conn: Connection, sql: str, parameters: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
    """Run one query over a whole table on ``conn``'s DBAPI connection and yield its rows
    without holding them all at once (the backend's way: :meth:`Backend.scan`)."""
    return backend_of(conn).scan(conn, sql, parameters)


def fetch_in_chunks(
    conn: Connection, sql: str, parameters: Sequence[Any] = ()
) -> Iterator[tuple[Any, ...]]:
    """Run one query on ``conn``'s DBAPI connection and yield its rows in chunks of the
    cursor's results (a scan for drivers that step through the rows as they are fetched)."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        try:
            cursor.execute(sql, parameters)
        except Exception as exc:
            raise_wrapped(conn, sql, parameters, exc)
            raise
        while rows := cursor.fetchmany(1000):
            yield from rows
    finally:
        cursor.close()
