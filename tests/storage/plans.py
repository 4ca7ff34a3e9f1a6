"""Query plans of the statements a store runs, on either backend.

SQLite plans by the indexes alone (``EXPLAIN QUERY PLAN``); PostgreSQL's planner weighs the
table's statistics, so a plan check there runs on enough rows, after ``ANALYZE`` (what
autovacuum does on a live server), and asks the question that matters: does the query read
through the index the code promises, or scan the table?
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memrepl.storage import Store
from memrepl.storage.backends import backend_of


def analyze(store: Store) -> None:
    """Refresh the planner's statistics (PostgreSQL; SQLite plans without them)."""
    if store.engine.dialect.name == "postgresql":
        with store.write() as conn:
            conn.exec_driver_sql("ANALYZE")


def plan(store: Store, sql: str, parameters: Sequence[Any] = ()) -> list[str]:
    """The plan of ``sql`` (the driver's SQL) on ``store``, one line per step."""
    with store.read() as conn:
        return backend_of(conn).explain(conn, sql, parameters)


def reads_through(steps: list[str] | str, index: str, table: str) -> bool:
    """Whether a PostgreSQL plan reads ``table`` through ``index`` (an index, index-only or
    bitmap scan) and never scans it whole."""
    text = steps if isinstance(steps, str) else "\n".join(steps)
    through = (
        f"Index Scan using {index} on {table}" in text
        or f"Index Only Scan using {index} on {table}" in text
        or f"Bitmap Index Scan on {index}" in text
    )
    return through and f"Seq Scan on {table}" not in text
