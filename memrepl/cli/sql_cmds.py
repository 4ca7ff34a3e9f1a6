"""``memrepl sql "SELECT ..."``: one read-only SQL statement on the store, as a table or JSON.

The store's tables are meant to be queried (ARCHITECTURE.md, "Storage"; the columns are
documented in :mod:`memrepl.storage.schema`): this is the door for anything the other commands
do not show. The rule that keeps it right: **it can never write**, three times over --

1. the file is opened with the ``mode=ro`` URI (SQLite itself refuses every write);
2. ``PRAGMA query_only`` is on;
3. an authorizer denies every statement that would write (INSERT, UPDATE, DELETE, CREATE,
   DROP, ALTER, ATTACH, ...) when it is prepared, which is what gives the clear message: the
   statement is refused before it runs, naming what it would have changed.

Nothing here goes through :func:`memrepl.open`: no migration, no clock, no node row.

Named parameters are given as sqlite-utils gives them: ``-p name value`` binds ``:name`` (as
text; ``CAST(:n AS INTEGER)`` for a number), so values never need quoting into the SQL. Two
functions name what the tables store as numbers: ``tier_name(tier)`` (``working``,
``episodic``, ``semantic``) and ``priority_name(priority)`` (``urgent`` ... ``background``).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any

from memrepl.cli.context import (
    Subparsers,
    add_command,
    connect_readonly,
    db_path,
    priority_name,
    tier_name,
)
from memrepl.cli.output import add_format_flags, emit_rows, emit_table
from memrepl.errors import CommandError

ORDER = 50

#: Authorizer actions that write, with the verb the refusal names.
WRITE_ACTIONS: dict[int, str] = {
    sqlite3.SQLITE_INSERT: "INSERT into",
    sqlite3.SQLITE_UPDATE: "UPDATE",
    sqlite3.SQLITE_DELETE: "DELETE from",
    sqlite3.SQLITE_CREATE_INDEX: "CREATE INDEX",
    sqlite3.SQLITE_CREATE_TABLE: "CREATE TABLE",
    sqlite3.SQLITE_CREATE_TEMP_INDEX: "CREATE TEMP INDEX",
    sqlite3.SQLITE_CREATE_TEMP_TABLE: "CREATE TEMP TABLE",
    sqlite3.SQLITE_CREATE_TEMP_TRIGGER: "CREATE TEMP TRIGGER",
    sqlite3.SQLITE_CREATE_TEMP_VIEW: "CREATE TEMP VIEW",
    sqlite3.SQLITE_CREATE_TRIGGER: "CREATE TRIGGER",
    sqlite3.SQLITE_CREATE_VIEW: "CREATE VIEW",
    sqlite3.SQLITE_CREATE_VTABLE: "CREATE VIRTUAL TABLE",
    sqlite3.SQLITE_DROP_INDEX: "DROP INDEX",
    sqlite3.SQLITE_DROP_TABLE: "DROP TABLE",
    sqlite3.SQLITE_DROP_TEMP_INDEX: "DROP TEMP INDEX",
    sqlite3.SQLITE_DROP_TEMP_TABLE: "DROP TEMP TABLE",
    sqlite3.SQLITE_DROP_TEMP_TRIGGER: "DROP TEMP TRIGGER",
    sqlite3.SQLITE_DROP_TEMP_VIEW: "DROP TEMP VIEW",
    sqlite3.SQLITE_DROP_TRIGGER: "DROP TRIGGER",
    sqlite3.SQLITE_DROP_VIEW: "DROP VIEW",
    sqlite3.SQLITE_DROP_VTABLE: "DROP VIRTUAL TABLE",
    sqlite3.SQLITE_ALTER_TABLE: "ALTER TABLE",
    sqlite3.SQLITE_REINDEX: "REINDEX",
    sqlite3.SQLITE_ANALYZE: "ANALYZE",
    sqlite3.SQLITE_ATTACH: "ATTACH",
    sqlite3.SQLITE_DETACH: "DETACH",
}

#: SQLite's own schema tables (an INSERT into them is the first step of a CREATE).
SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_schema", "sqlite_temp_master"})

#: Pragmas that would undo the read-only guard or change the file if given a value.
GUARDED_PRAGMAS = frozenset({"query_only", "writable_schema", "journal_mode", "user_version"})


class ReadOnlyGuard:
    """An sqlite3 authorizer that denies writes and remembers what it denied."""

    def __init__(self) -> None:
        self.denied: list[str] = []

    def __call__(
        self,
        action: int,
        arg1: str | None,
        arg2: str | None,
        database: str | None,
        source: str | None,
    ) -> int:
        verb = WRITE_ACTIONS.get(action)
        if verb is not None and (arg1 or "").lower() in SCHEMA_TABLES:
            # DDL first edits the schema table; let the CREATE/DROP action that follows be the
            # one refused (and named). mode=ro still refuses a direct edit of the schema.
            return sqlite3.SQLITE_OK
        setting = action == sqlite3.SQLITE_PRAGMA and arg2 is not None
        if verb is None and setting and (arg1 or "").lower() in GUARDED_PRAGMAS:
            verb = "set PRAGMA"
        if verb is None:
            return sqlite3.SQLITE_OK
        self.denied.append(f"{verb} {arg1}" if arg1 else "")
        return sqlite3.SQLITE_DENY

    def described(self) -> str:
        """The write denied, as 'VERB target' ('' if it named no target)."""
        return next((entry for entry in self.denied if entry), "")


def _named(function: Any) -> Any:
    def named(value: object) -> object:
        return function(value) if isinstance(value, int) and not isinstance(value, bool) else value

    return named


def add_functions(conn: sqlite3.Connection) -> None:
    """``tier_name(n)`` and ``priority_name(n)`` (any other value comes back unchanged)."""
    conn.create_function("tier_name", 1, _named(tier_name), deterministic=True)
    conn.create_function("priority_name", 1, _named(priority_name), deterministic=True)


def run_query(
    conn: sqlite3.Connection, statement: str, parameters: dict[str, str] | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one statement under a :class:`ReadOnlyGuard`: (column names, rows).

    Raises CommandError for a statement that would write (naming what it would change) and for
    any other SQLite error (the statement's own fault: syntax, unknown table, ...).
    """
    guard = ReadOnlyGuard()
    conn.set_authorizer(guard)
    try:
        cursor = conn.execute(statement, parameters or {})
        columns = [column[0] for column in cursor.description or ()]
        return columns, cursor.fetchall()
    except sqlite3.Error as exc:
        if guard.denied or "readonly" in str(exc) or "query_only" in str(exc):
            named = guard.described()
            what = f" (it would {named})" if named else ""
            raise CommandError(
                f"sql: refused: memrepl sql is read-only{what}; change a store with "
                "memrepl put/merge/delete or the library"
            ) from exc
        raise CommandError(f"sql: {exc}") from exc


def _numeric_columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[int]:
    def numeric(index: int) -> bool:
        values = [row[index] for row in rows if row[index] is not None]
        return bool(values) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values
        )

    return [index for index in range(width) if numeric(index)]


def run_sql(args: argparse.Namespace) -> int:
    """Run the statement and print its rows."""
    statement: str = args.statement
    if statement == "-":
        statement = sys.stdin.read()
    parameters = dict(args.param or [])
    conn = connect_readonly(db_path(args))
    try:
        add_functions(conn)
        columns, rows = run_query(conn, statement, parameters)
    finally:
        conn.close()
    records = (dict(zip(columns, row, strict=True)) for row in rows)
    if emit_rows(args.format, records, columns):
        return 0
    if columns:
        emit_table(columns, rows, right=_numeric_columns(rows, len(columns)))
    return 0


def add_parsers(subparsers: Subparsers) -> None:
    """``sql``."""
    parser = add_command(
        subparsers,
        "sql",
        help="run a read-only SQL query on the store",
        description=(
            "Run one read-only SQL statement on the store and print its rows as a table "
            "(or --json, --nl, --csv). The store's tables: working_items, episodic_items, "
            "semantic_items, conflicts, sync_vectors, inbound_cursors, tombstone_horizons, "
            "node. Statements that would write are refused. tier_name(tier) and "
            "priority_name(priority) name the numbers the tables store.\n\n"
            'example: memrepl sql "SELECT item_id, loser_origin, rule FROM conflicts '
            'WHERE peer_id = :peer" -p peer node-b'
        ),
        run=run_sql,
    )
    parser.add_argument(
        "statement", metavar="SQL", help="one SQL statement (SELECT ...), or - to read stdin"
    )
    parser.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="bind :NAME in the statement to VALUE (text; repeatable)",
    )
    add_format_flags(parser)
