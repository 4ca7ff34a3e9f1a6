"""The keyword index keyed by ``created_at_ns``, which a row keeps while it lives here.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

Migration 0006 gave each index entry the rowid of its item's ``modified_at``, which changes with
every write: every write had to remove the entry and add it again, even when the item's text did
not change. Keyed by ``created_at_ns`` (the stamp of the write that created the row on this node,
unique, kept by every later write), an entry stays right while the text stays the same
(memrepl.storage.keyword). This revision makes ``created_at_ns`` unique (an index per tier table:
how a search hit finds its row), sets the indexes' FTS5 ``automerge`` to 16 and rebuilds each
index with the new rowids, as ``memrepl index rebuild`` would. The text indexed and the settings
are frozen here (equal to memrepl.storage.keyword's; a test checks). Downgrading rebuilds the
indexes keyed by ``modified_at``, with FTS5's default settings, again.

On PostgreSQL the index (a ``tsvector`` table, memrepl.storage.backends.postgresql_search) was
keyed by ``created_at_ns`` from the start, as no store on PostgreSQL predates this revision: the
revision adds the unique index and refills the index with the code's lexemes; its downgrade
drops the unique index only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: A local, derived index and a local column's index: what peers exchange is unchanged.
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


#: FTS5 settings this revision gives every index: merge segments 16 at a time (the default, 4,
#: rewrites each entry about twice as often as the index grows).
SETTINGS = (("automerge", 16),)
#: What the downgrade restores.
DEFAULT_SETTINGS = (("automerge", 4),)


def configure(items: str, settings: Sequence[tuple[str, int]]) -> list[str]:
    fts = f"{items}_fts"
    return [f"INSERT INTO {fts}({fts}, rank) VALUES ('{key}', {value})" for key, value in settings]


def statements(items: str) -> list[str]:
    """The DDL of one tier table's index at this revision: migration 0006's table with this
    revision's settings."""
    return [
        f"CREATE VIRTUAL TABLE {items}_fts USING fts5(body, content='', "
        "tokenize='unicode61 remove_diacritics 2')",
        *configure(items, SETTINGS),
    ]


def rebuild(items: str, rowid: str) -> None:
    """Index every live row of ``items`` again, keyed by its column ``rowid``; then merge the
    index into one segment (what memrepl.storage.keyword.rebuild does)."""
    fts = f"{items}_fts"
    op.execute(f"INSERT INTO {fts}({fts}) VALUES ('delete-all')")
    bind = op.get_bind()
    rows = bind.execute(sa.text(f"SELECT {rowid}, content FROM {items} WHERE deleted = 0"))
    add = sa.text(f"INSERT INTO {fts}(rowid, body) VALUES (:rowid, :body)")
    while chunk := rows.fetchmany(CHUNK_ROWS):
        bind.execute(
            add,
            [
                {"rowid": value, "body": indexed_text(json.loads(content))}
                for value, content in chunk
            ],
        )
    op.execute(f"INSERT INTO {fts}({fts}) VALUES ('optimize')")


def _postgresql() -> bool:
    return bool(op.get_context().dialect.name == "postgresql")


def upgrade() -> None:
    for items in TIER_TABLES:
        if not op.get_context().as_sql:
            # created_at_ns was unique by construction (one clock tick per created row) unless
            # rows were written by hand: give such a duplicate its own last stamp instead.
            op.execute(
                f"UPDATE {items} SET created_at_ns = modified_at WHERE item_id NOT IN "
                f"(SELECT min(item_id) FROM {items} GROUP BY created_at_ns)"
            )
        op.create_index(f"ix_{items}_created_at_ns", items, ["created_at_ns"], unique=True)
        if not _postgresql():
            for statement in configure(items, SETTINGS):
                op.execute(statement)
    if op.get_context().as_sql:
        return  # printing the DDL (alembic upgrade --sql): no rows to index
    if _postgresql():
        # The lexemes are the code's (see migration 0006).
        from memrepl.storage.backends import postgresql_search
        from memrepl.storage.schema import TIER_SPECS

        for spec in TIER_SPECS.values():
            postgresql_search.rebuild(op.get_bind(), spec)
        return
    for items in TIER_TABLES:
        rebuild(items, "created_at_ns")


def downgrade() -> None:
    for items in TIER_TABLES:
        op.drop_index(f"ix_{items}_created_at_ns", table_name=items)
        if not _postgresql():
            for statement in configure(items, DEFAULT_SETTINGS):
                op.execute(statement)
    if op.get_context().as_sql or _postgresql():
        return
    for items in TIER_TABLES:
        rebuild(items, "modified_at")
