"""The keyword index: an FTS5 table per tier, kept by triggers, filled from the existing rows.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

``<tier table>_fts`` is a contentless FTS5 table with one row per live item (rowid = the item's
``modified_at``; the text: every string value of its content); three triggers on the tier table
keep it equal to the table in the statement that changes a row (memrepl.storage.keyword). The
DDL is frozen here; a test checks it equals what memrepl.storage.keyword builds at this head.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: A local, derived index: what peers exchange and how they merge it is unchanged.
changes_replication = False

TIER_TABLES = ("working_items", "episodic_items", "semantic_items")

TEXT = "(SELECT group_concat(value, ' ') FROM json_tree({row}.content) WHERE type = 'text')"
ADD = "INSERT INTO {fts}(rowid, body) SELECT {row}.modified_at, {text} WHERE {row}.deleted = 0;"
REMOVE = (
    "INSERT INTO {fts}({fts}, rowid, body) "
    "SELECT 'delete', {row}.modified_at, {text} WHERE {row}.deleted = 0;"
)


def statements(items: str) -> list[str]:
    """The DDL of one tier table's index (what migration 0006 ran)."""
    fts = items + "_fts"

    def add(row: str) -> str:
        return ADD.format(fts=fts, row=row, text=TEXT.format(row=row))

    def remove(row: str) -> str:
        return REMOVE.format(fts=fts, row=row, text=TEXT.format(row=row))

    return [
        f"CREATE VIRTUAL TABLE {fts} USING fts5(body, content='', "
        "tokenize='unicode61 remove_diacritics 2')",
        f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {items} BEGIN {add('NEW')} END",
        f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {items} BEGIN {remove('OLD')} END",
        f"CREATE TRIGGER {fts}_update AFTER UPDATE OF content, modified_at, deleted ON {items} "
        f"BEGIN {remove('OLD')} {add('NEW')} END",
    ]


def upgrade() -> None:
    for items in TIER_TABLES:
        for statement in statements(items):
            op.execute(statement)
        text = TEXT.format(row=items)
        op.execute(
            f"INSERT INTO {items}_fts(rowid, body) SELECT modified_at, {text} "
            f"FROM {items} WHERE deleted = 0"
        )


def downgrade() -> None:
    for items in TIER_TABLES:
        for suffix in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER {items}_fts_{suffix}")
        op.execute(f"DROP TABLE {items}_fts")
