"""The keyword index: an FTS5 table per tier (a tsvector table on PostgreSQL), filled from the
existing rows.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

``<tier table>_fts`` is a contentless FTS5 table with one row per live item (rowid = the item's
``modified_at``; the text: every string value of its content). memrepl's storage operations keep
it equal to the table in each write's transaction (memrepl.storage.keyword). The DDL is frozen
here; a test checks it equals what memrepl.storage.keyword builds at this head.

On PostgreSQL the same index is a table of ``(modified_at, body tsvector)`` with a GIN index on
``body`` (memrepl.storage.backends.postgresql_search builds its lexemes from the same text).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: A local, derived index: what peers exchange and how they merge it is unchanged.
changes_replication = False

TIER_TABLES = ("working_items", "episodic_items", "semantic_items")

CHUNK_ROWS = 2000


def indexed_text(content: object) -> str:
    """The text indexed for a content object: its string values, depth first in document
    order, joined by spaces (frozen here; equal to memrepl.storage.keyword.indexed_text)."""
    found: list[str] = []
    stack: list[object] = [content]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            stack.extend(reversed(list(value.values())))
        elif isinstance(value, list):
            stack.extend(reversed(value))
    return " ".join(found)


def statements(items: str) -> list[str]:
    """The DDL of one tier table's index (what migration 0006 ran)."""
    return [
        f"CREATE VIRTUAL TABLE {items}_fts USING fts5(body, content='', "
        "tokenize='unicode61 remove_diacritics 2')"
    ]


def postgresql_statements(items: str) -> list[str]:
    """The DDL of one tier table's index on PostgreSQL (what migration 0006 ran there)."""
    return [
        f"CREATE TABLE {items}_fts (rowid BIGINT PRIMARY KEY, body TSVECTOR NOT NULL)",
        f"CREATE INDEX {items}_fts_body ON {items}_fts USING gin (body)",
    ]


def upgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    for items in TIER_TABLES:
        for statement in postgresql_statements(items) if postgresql else statements(items):
            op.execute(statement)
    if op.get_context().as_sql:
        return  # printing the DDL (alembic upgrade --sql): no rows to index
    bind = op.get_bind()
    if postgresql:
        # The lexemes of a text are the code's (memrepl.storage.backends.postgresql_search):
        # if they ever change, a new migration refills the index the same way.
        from memrepl.storage.backends import postgresql_search
        from memrepl.storage.schema import TIER_SPECS

        for spec in TIER_SPECS.values():
            postgresql_search.fill(bind, spec)
        return
    for items in TIER_TABLES:
        rows = bind.execute(sa.text(f"SELECT modified_at, content FROM {items} WHERE deleted = 0"))
        add = sa.text(f"INSERT INTO {items}_fts(rowid, body) VALUES (:stamp, :body)")
        while chunk := rows.fetchmany(CHUNK_ROWS):
            bind.execute(
                add,
                [
                    {"stamp": stamp, "body": indexed_text(json.loads(content))}
                    for stamp, content in chunk
                ],
            )


def downgrade() -> None:
    for items in TIER_TABLES:
        op.execute(f"DROP TABLE {items}_fts")
