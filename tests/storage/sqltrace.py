"""What a store really sends to SQLite: the statements, as SQLite's trace callback sees them.

SQLAlchemy's ``before_cursor_execute`` event misses the hot statements that run on the DBAPI
cursor (:mod:`memrepl.storage.driver`); SQLite's own trace sees everything, with the parameters
bound into the text (so ``EXPLAIN QUERY PLAN <statement>`` needs no parameters).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event

from memrepl.storage import Store


def statements_run(store: Store, action: Callable[[], object]) -> list[str]:
    """Every statement memrepl runs for ``store`` while ``action()`` runs, in order.

    What the keyword index's triggers run is left out: SQLite reports a trigger's program with
    the text of the statement that fired it (right after that statement) and FTS5's own
    statements as ``--`` comments.
    """
    seen: list[str] = []
    traced: list[Any] = []

    def on_checkout(dbapi_connection: Any, record: object, proxy: object) -> None:
        dbapi_connection.set_trace_callback(seen.append)
        traced.append(dbapi_connection)

    event.listen(store.engine, "checkout", on_checkout)
    try:
        action()
    finally:
        event.remove(store.engine, "checkout", on_checkout)
        for dbapi_connection in traced:
            dbapi_connection.set_trace_callback(None)
    statements: list[str] = []
    for sql in seen:
        if sql.startswith("--") or (statements and statements[-1] == sql):
            continue
        statements.append(sql)
    return statements


def first_words(statements: list[str]) -> list[str]:
    """Each statement's first word, upper-cased (``BEGIN``, ``SELECT``, ``INSERT``...)."""
    return [statement.split(maxsplit=1)[0].upper() for statement in statements]
