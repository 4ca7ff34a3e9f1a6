"""Reading a store's database the way a user would: plain sqlite3 or psycopg, no memrepl between.

Shared by every test package (``from ..files import dump, query``): each compares a database
before and after an operation, or checks rows with SQL, as the README tells users to. A location
is a SQLite file (a Path) or a PostgreSQL database (its URL, a str): the SQL is written for
SQLite (``?`` and ``:name`` placeholders) and runs unchanged on PostgreSQL where the two agree;
PostgreSQL's booleans come back as 0 and 1, as SQLite's do.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

_NAMED = re.compile(r"(?<![:\w]):(\w+)")


def is_postgres(location: object) -> bool:
    return isinstance(location, str) and location.startswith("postgresql")


def conninfo(url: str) -> str:
    """The psycopg connection string of a ``postgresql+psycopg://`` URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _pg_sql(sql: str, named: bool) -> str:
    sql = sql.replace("%", "%%")
    return _NAMED.sub(r"%(\1)s", sql) if named else sql.replace("?", "%s")


def _plain(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


@contextmanager
def pg_connection(url: str, *, autocommit: bool = False) -> Iterator[Any]:
    import psycopg

    conn = psycopg.connect(conninfo(url), autocommit=autocommit)
    try:
        yield conn
        if not autocommit:
            conn.commit()
    finally:
        conn.close()


def query(path: Path | str | None, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the store at ``path``; ``params`` are the ``?`` values, or one mapping
    of the ``:name`` values. A statement that writes is committed."""
    assert path is not None, "a store on a file or a server"
    named = len(params) == 1 and isinstance(params[0], Mapping)
    values: Sequence[Any] | Mapping[str, Any] = params[0] if named else params
    if is_postgres(path):
        with pg_connection(str(path)) as conn:
            cursor = conn.execute(_pg_sql(sql, named), values)
            rows = cursor.fetchall() if cursor.description else []
            return [tuple(_plain(value) for value in row) for row in rows]
    conn = sqlite3.connect(path)
    try:
        with conn:
            return conn.execute(sql, values).fetchall()
    finally:
        conn.close()


def dump(path: Path | str | None, *, skip_refusals: bool = False) -> str:
    """Every table's schema and rows (the node row and its clock included), as text: equal dumps
    mean nothing was written. ``skip_refusals`` leaves out the rows of ``sync_refusals``, the one
    write a refused batch makes (it counts the refusal)."""
    assert path is not None, "a store on a file or a server"
    if is_postgres(path):
        return _pg_dump(str(path), skip_refusals)
    conn = sqlite3.connect(path)
    try:
        lines = conn.iterdump()
        if skip_refusals:
            lines = (line for line in lines if not line.startswith('INSERT INTO "sync_refusals"'))
        return "\n".join(lines)
    finally:
        conn.close()


def _pg_dump(url: str, skip_refusals: bool) -> str:
    lines: list[str] = []
    with pg_connection(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, column_default FROM "
            "information_schema.columns WHERE table_schema = current_schema() "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
        lines += [repr(row) for row in columns]
        lines += [
            repr(row)
            for row in conn.execute(
                "SELECT tablename, indexname, indexdef FROM pg_indexes "
                "WHERE schemaname = current_schema() ORDER BY 1, 2"
            )
        ]
        tables = sorted({table for table, *_ in columns})
        for table in tables:
            if skip_refusals and table == "sync_refusals":
                continue
            count = sum(1 for row in columns if row[0] == table)
            order = ", ".join(str(n) for n in range(1, count + 1))
            for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY {order}'):  # type: ignore[arg-type]
                lines.append(f"{table}: {row!r}")
        for (name,) in conn.execute(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()"
        ).fetchall():
            (value,) = conn.execute(f'SELECT last_value FROM "{name}"').fetchone()  # type: ignore
            lines.append(f"sequence {name}: {value}")
    return "\n".join(lines)


def intact(path: Path | str) -> bool:
    """Whether the store's database is intact: SQLite's ``PRAGMA integrity_check``; on
    PostgreSQL, amcheck's ``bt_index_check`` of every btree index with every table row found in
    it (the server is never the one killed in these tests: this checks what memrepl wrote)."""
    if not is_postgres(path):
        return query(path, "PRAGMA integrity_check") == [("ok",)]
    with pg_connection(str(path)) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        indexes = conn.execute(
            "SELECT c.oid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE a.amname = 'btree' AND n.nspname = current_schema()"
        ).fetchall()
        for (oid,) in indexes:
            conn.execute("SELECT bt_index_check(%s::oid, true)", (oid,))
        return bool(indexes)


def location_of(store: Any) -> Path | str:
    """Where a store lives, as :func:`query` and ``memrepl.open`` take it: its file, or its
    database URL."""
    if store.path is not None:
        return Path(store.path)
    return str(store.url.render_as_string(hide_password=False))


def table_names(path: Path | str) -> set[str]:
    """The tables of the store (SQLite's own ``sqlite_*`` tables left out)."""
    if is_postgres(path):
        rows = query(path, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    else:
        rows = query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")
    return {str(name) for (name,) in rows if not str(name).startswith("sqlite_")}


def by_hand(path: Path | str, *statements: str) -> None:
    """Change a store the way an operator would: plain SQL in one transaction, nothing of
    memrepl (no write lock, no digests kept)."""
    if is_postgres(path):
        with pg_connection(str(path)) as conn:
            for statement in statements:
                conn.execute(statement.replace("%", "%%"))  # type: ignore[arg-type]
        return
    with sqlite3.connect(path) as conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


def _maintenance(url: str) -> tuple[str, str]:
    """The server's ``postgres`` database URL, and the name of the database of ``url``."""
    base, name = url.rsplit("/", 1)
    return f"{base}/postgres", name


def backup(path: Path | str, to: Path) -> None:
    """An online backup of a store into the file ``to``: SQLite's backup API, or ``pg_dump``."""
    if is_postgres(path):
        from .pgserver import find_binary

        subprocess.run(
            [find_binary("pg_dump"), "--format=custom", f"--file={to}", conninfo(str(path))],
            check=True,
            capture_output=True,
        )
        return
    with sqlite3.connect(path) as live, sqlite3.connect(to) as copy:
        live.backup(copy)
    live.close()
    copy.close()


def restore(path: Path | str, backup_file: Path) -> None:
    """Put a backup taken by :func:`backup` back in place of the store (which must be closed):
    the old file replaced, or the database dropped and restored with ``pg_restore``."""
    if is_postgres(path):
        from .pgserver import find_binary

        maintenance, name = _maintenance(str(path))
        with pg_connection(maintenance, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")  # type: ignore[arg-type]
            conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
        subprocess.run(
            [find_binary("pg_restore"), f"--dbname={conninfo(str(path))}", str(backup_file)],
            check=True,
            capture_output=True,
        )
        return
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copy(backup_file, path)


def wipe(path: Path | str) -> None:
    """The store is lost (it must be closed): the file and its WAL deleted, or the database
    dropped and created again empty."""
    if is_postgres(path):
        maintenance, name = _maintenance(str(path))
        with pg_connection(maintenance, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")  # type: ignore[arg-type]
            conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
        return
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
