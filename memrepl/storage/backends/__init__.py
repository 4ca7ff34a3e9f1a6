"""The database backends: everything that differs between SQLite and PostgreSQL, one module each.

memrepl's storage is written once, in SQLAlchemy Core, over a ``Connection``; the two databases
run the same statements for almost everything (the schema, the upserts with ``ON CONFLICT``, the
delta queries, the digests). What cannot be the same lives in ONE module per backend, never in
the tiers:

- :mod:`.sqlite`: the pragmas, ``BEGIN IMMEDIATE``, ``PRAGMA data_version``,
  ``EXPLAIN QUERY PLAN`` and SQLite's JSON functions (the FTS5 keyword index is
  :mod:`memrepl.storage.keyword`'s, as it was before PostgreSQL);
- :mod:`.postgresql` and :mod:`.postgresql_search`: psycopg 3, the write transaction (an
  advisory lock), read snapshots, the node lock, ``jsonb`` for filters, and the keyword index
  on PostgreSQL's full-text search.

A :class:`Backend` is looked up by SQLAlchemy's dialect name (:func:`backend_of` a connection,
:func:`backend_named`). The rule that keeps it right: a statement that must differ is a method
here (or a portable construct in :mod:`memrepl.storage.portable` that each backend compiles),
and callers never test the dialect name themselves.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table
from sqlalchemy.engine import URL, Connection, Dialect, Engine

from memrepl.errors import StoreError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

#: The modules of the backends memrepl knows, by dialect name (imported when first used: a
#: SQLite store never loads psycopg).
MODULES = {"sqlite": "sqlite", "postgresql": "postgresql"}


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """How a store's connections are set up (checked by :mod:`memrepl.storage.engine`).

    ``synchronous`` is SQLite's setting of that name (OFF, NORMAL, FULL, EXTRA); on PostgreSQL
    FULL and EXTRA mean ``synchronous_commit = on``, NORMAL and OFF ``off``. ``busy_timeout_ms``
    is how long a writer waits for another's write transaction before it fails (SQLite's
    ``busy_timeout``, PostgreSQL's ``lock_timeout``).
    """

    synchronous: str
    busy_timeout_ms: int


class Backend:
    """What one database does its own way. Subclasses: :class:`.sqlite.SQLiteBackend`,
    :class:`.postgresql.PostgreSQLBackend`."""

    #: SQLAlchemy's dialect name (``"sqlite"``, ``"postgresql"``).
    name: str
    #: The dialect the hot statements are compiled for (positional parameters for the driver's
    #: cursor: :mod:`memrepl.storage.driver`).
    driver_dialect: Dialect

    #: The keyword index's own implementation (a module with ``index_changes``, ``fill``,
    #: ``rebuild`` and ``ranked``); None: FTS5, in :mod:`memrepl.storage.keyword` itself.
    keyword_index: Any = None

    def insert(self, table: Table) -> Any:
        """An INSERT of ``table`` with this dialect's ``on_conflict_do_update`` and
        ``on_conflict_do_nothing`` (both dialects spell them the same)."""
        raise NotImplementedError

    def create_engine(self, url: URL, settings: EngineSettings) -> Engine:
        """A synchronous engine for ``url`` whose write transactions hold the store's write lock
        from their first statement (:data:`memrepl.storage.engine.WRITE_OPTION`)."""
        raise NotImplementedError

    def create_async_engine(self, url: URL, settings: EngineSettings) -> AsyncEngine:
        """The asyncio twin of :meth:`create_engine`, same listeners on its sync engine."""
        raise NotImplementedError

    def has_table(self, conn: Connection, name: str) -> bool:
        """Whether the store has a table called ``name`` (Alembic's, a tier's)."""
        raise NotImplementedError

    def column_names(self, conn: Connection, table: str) -> list[str]:
        """The columns ``table`` has in the database, whatever the metadata says (a migration
        may run code written for a later schema)."""
        raise NotImplementedError

    def scan(self, conn: Connection, sql: str, parameters: Sequence[Any]) -> Iterator[Any]:
        """Rows of a query over a whole table, as the driver reads them, without holding them
        all at once; ``sql`` is compiled for :attr:`driver_dialect`."""
        raise NotImplementedError

    def explain(self, conn: Connection, sql: str, parameters: Sequence[Any] = ()) -> list[str]:
        """The query plan of ``sql`` (driver SQL) with ``parameters``, one line per step."""
        raise NotImplementedError

    def commit_version(self, dbapi_connection: Any) -> int:
        """A number that changes whenever a write transaction committed on the store (any
        process), read on a connection kept for it: what a node polls to see other writers."""
        raise NotImplementedError

    def node_lock(self, url: URL) -> Any:
        """The node lock of a store on a server (:class:`.postgresql.NodeLockSession`); a
        SQLite store's is a file beside it (:mod:`memrepl.node.lock`)."""
        raise NotImplementedError


_LOADED: dict[str, Backend] = {}


def backend_named(name: str) -> Backend:
    """The backend of SQLAlchemy's dialect ``name``; StoreError for one memrepl cannot use."""
    found = _LOADED.get(name)
    if found is None:
        module = MODULES.get(name)
        if module is None:
            raise StoreError(f"memrepl stores live in SQLite or PostgreSQL, not {name!r}")
        backend = importlib.import_module(f"{__name__}.{module}").BACKEND
        assert isinstance(backend, Backend)
        found = _LOADED[name] = backend
    return found


def backend_of(conn: Connection) -> Backend:
    """The backend of the database ``conn`` is connected to."""
    return backend_named(conn.dialect.name)
