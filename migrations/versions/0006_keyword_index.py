"""The keyword index: an FTS5 table per tier, filled from the existing rows.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

``<tier table>_fts`` is a contentless FTS5 table with one row per live item (rowid = the item's
``modified_at``; the text: every string value of its content). memrepl's storage operations keep
it equal to the table in each write's transaction (memrepl.storage.keyword). The DDL is frozen
here; a test checks it equals what memrepl.storage.keyword builds at this head.
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


def upgrade() -> None:
    for items in TIER_TABLES:
        for statement in statements(items):
            op.execute(statement)
    if op.get_context().as_sql:
        return  # printing the DDL (alembic upgrade --sql): no rows to index
    bind = op.get_bind()
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
