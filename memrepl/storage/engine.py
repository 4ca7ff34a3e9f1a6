"""SQLAlchemy engines for a memrepl store: which database a location names, and write engines.

A store lives in a SQLite file (a path, ``":memory:"``, or a ``sqlite:///`` URL) or in a
PostgreSQL database (``postgresql+psycopg://user@host/dbname``; ``postgresql://`` and
``postgres://`` mean the same, through psycopg 3). :func:`store_url` turns a location into a
SQLAlchemy URL; the engine comes from the backend of its dialect
(:mod:`memrepl.storage.backends`), with that backend's connection settings and transaction rule.

The rule that keeps it right: a **write engine** (:func:`write_engine`, the execution option
:data:`WRITE_OPTION`) is a copy of the store's engine (same pool) whose every transaction holds
the store's write lock from its first statement -- SQLite's ``BEGIN IMMEDIATE``, an advisory
lock on PostgreSQL -- so what a write reads (the clock, the rows it merges into) cannot change
under it, and writers of any process take their turns. Every other transaction is a read that
sees one snapshot.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import URL, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine

from memrepl.errors import StoreError
from memrepl.storage.backends import EngineSettings, backend_named
from memrepl.storage.backends.sqlite import MEMORY, WRITE_OPTION

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_MS",
    "DEFAULT_SYNCHRONOUS",
    "MEMORY",
    "SYNCHRONOUS_MODES",
    "WRITE_OPTION",
    "Location",
    "async_write_engine",
    "create_async_engine",
    "create_engine",
    "create_engine_from_url",
    "database_url",
    "describe",
    "is_url",
    "store_url",
    "write_engine",
]

#: SQLite's ``synchronous`` settings. FULL (the default) makes every commit durable in WAL mode
#: (on PostgreSQL: ``synchronous_commit`` on for FULL and EXTRA, off for NORMAL and OFF).
SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

DEFAULT_SYNCHRONOUS = "FULL"
DEFAULT_BUSY_TIMEOUT_MS = 5000

#: What names a store: a SQLite file's path, or a database URL (str or SQLAlchemy URL).
Location = str | os.PathLike[str] | URL

#: The URL schemes of PostgreSQL that memrepl runs on psycopg 3.
_POSTGRESQL_NAMES = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg_async")


def _check_settings(synchronous: str, busy_timeout_ms: int) -> EngineSettings:
    mode = synchronous.upper()
    if mode not in SYNCHRONOUS_MODES:
        raise StoreError(
            f"opening a store: synchronous={synchronous!r} is not one of {SYNCHRONOUS_MODES}"
        )
    if not isinstance(busy_timeout_ms, int) or busy_timeout_ms < 0:
        raise StoreError(
            f"opening a store: busy_timeout_ms must be a non-negative int, not {busy_timeout_ms!r}"
        )
    return EngineSettings(mode, busy_timeout_ms)


def is_url(location: object) -> bool:
    """Whether ``location`` is a database URL rather than a file path."""
    return isinstance(location, URL) or (isinstance(location, str) and "://" in location)


def database_url(path: str | os.PathLike[str], *, driver: str = "pysqlite") -> URL:
    """The SQLAlchemy URL of the SQLite file ``path`` (``":memory:"``: a private in-memory one)."""
    drivername = "sqlite" if driver == "pysqlite" else f"sqlite+{driver}"
    if os.fspath(path) == MEMORY:
        return URL.create(drivername)
    return URL.create(drivername, database=os.path.abspath(os.fspath(path)))


def store_url(location: Location) -> URL:
    """The SQLAlchemy URL of a store's location: a path is a SQLite file; a URL is taken as is,
    PostgreSQL's with the psycopg driver. StoreError for a URL memrepl cannot open."""
    if not is_url(location):
        assert not isinstance(location, URL)
        return database_url(location)
    try:
        url = make_url(location if isinstance(location, URL) else os.fspath(location))
    except ArgumentError as exc:
        raise StoreError(f"opening a store: {exc}") from exc
    name = url.drivername
    if name in _POSTGRESQL_NAMES:
        return url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite":
        return url
    raise StoreError(
        f"opening a store: {url.render_as_string()!r} is not a database memrepl runs on "
        "(a SQLite file, or postgresql+psycopg://... for PostgreSQL through psycopg 3)"
    )


def create_engine_from_url(
    url: str | URL,
    *,
    synchronous: str = DEFAULT_SYNCHRONOUS,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
) -> Engine:
    """A synchronous engine for a store URL (SQLite or PostgreSQL), with its backend's
    connection settings and BEGIN handling."""
    settings = _check_settings(synchronous, busy_timeout_ms)
    resolved = store_url(url)
    return backend_named(resolved.get_backend_name()).create_engine(resolved, settings)


def create_engine(
    location: Location,
    *,
    synchronous: str = DEFAULT_SYNCHRONOUS,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
) -> Engine:
    """A synchronous engine for the store at ``location`` (a SQLite path or a database URL)."""
    return create_engine_from_url(
        store_url(location), synchronous=synchronous, busy_timeout_ms=busy_timeout_ms
    )


def create_async_engine(
    location: Location,
    *,
    synchronous: str = DEFAULT_SYNCHRONOUS,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
) -> AsyncEngine:
    """An asyncio engine for ``location`` (aiosqlite, or psycopg's async connection), with the
    same listeners on its sync engine."""
    settings = _check_settings(synchronous, busy_timeout_ms)
    resolved = store_url(location)
    return backend_named(resolved.get_backend_name()).create_async_engine(resolved, settings)


def write_engine(engine: Engine) -> Engine:
    """A copy of ``engine`` (same pool) whose transactions hold the store's write lock."""
    return engine.execution_options(**{WRITE_OPTION: True})


def async_write_engine(engine: AsyncEngine) -> AsyncEngine:
    """The asyncio twin of :func:`write_engine`."""
    return engine.execution_options(**{WRITE_OPTION: True})


def describe(location: Any) -> str:
    """A location as messages show it: a path as given, a URL without its password."""
    if isinstance(location, URL):
        return location.render_as_string(hide_password=True)
    if is_url(location):
        try:
            return make_url(location).render_as_string(hide_password=True)
        except ArgumentError:
            return "<a database URL>"
    return str(os.fspath(location))
