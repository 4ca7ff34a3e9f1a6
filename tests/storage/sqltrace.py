"""What a store really sends to its database: the statements, as the driver sees them.

SQLAlchemy's ``before_cursor_execute`` event misses the hot statements that run on the DBAPI
cursor (:mod:`memrepl.storage.driver`). On SQLite its own trace callback sees everything, with the
parameters bound into the text (so ``EXPLAIN QUERY PLAN <statement>`` needs no parameters); on
PostgreSQL a cursor class of our own records each statement with its parameters bound by psycopg
(``mogrify``), one per row of an ``executemany``, and several statements sent as one text (the
write transaction's BEGIN and lock) as several.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event

from memrepl.storage import Store


def _pg_cursor_class(seen: list[str]) -> Any:
    import psycopg

    def record(conn: Any, query: Any, params: Any) -> None:
        text = psycopg.ClientCursor(conn).mogrify(query, params)
        seen.extend(part.strip() for part in text.split(";") if part.strip())

    class TracingCursor(psycopg.Cursor[Any]):
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            record(self.connection, query, params)
            return super().execute(query, params, **kwargs)

        def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> Any:
            rows = list(params_seq)
            for params in rows:
                record(self.connection, query, params)
            return super().executemany(query, rows, **kwargs)

    return TracingCursor


def statements_run(store: Store, action: Callable[[], object]) -> list[str]:
    """Every statement memrepl runs for ``store`` while ``action()`` runs, in order.

    What the keyword index's triggers run is left out: SQLite reports a trigger's program with
    the text of the statement that fired it (right after that statement) and FTS5's own
    statements as ``--`` comments.
    """
    seen: list[str] = []
    traced: list[Any] = []
    postgres = store.engine.dialect.name == "postgresql"

    def trace(dbapi_connection: Any) -> None:
        if postgres:
            import psycopg

            dbapi_connection.cursor_factory = _pg_cursor_class(seen)
            traced.append((dbapi_connection, psycopg.Cursor))
        else:
            dbapi_connection.set_trace_callback(seen.append)
            traced.append((dbapi_connection, None))

    def on_checkout(dbapi_connection: Any, record: object, proxy: object) -> None:
        trace(dbapi_connection)

    writer = getattr(store, "_writer", None)
    if writer is not None:
        trace(writer.connection.dbapi_connection)
    event.listen(store.engine, "checkout", on_checkout)
    try:
        action()
    finally:
        event.remove(store.engine, "checkout", on_checkout)
        for dbapi_connection, cursor_class in traced:
            if postgres:
                dbapi_connection.cursor_factory = cursor_class
            else:
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
