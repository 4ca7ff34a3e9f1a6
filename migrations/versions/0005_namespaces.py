"""Namespaces: every tier item may be filed in a namespace (and under a key), replicated.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

Four columns on each tier table -- ``namespace`` (the text form, indexed), ``item_key``,
``namespace_ts`` and ``namespace_origin`` (the write that set them) -- holding the item's
placement, a last-writer-wins register of its replicated state (memrepl.merge.Placement).
Existing items are in no namespace.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from memrepl.storage.sqltypes import Int64, Str

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The namespace travels with the item and merges as part of its state: a node before this
#: revision would drop it from what it relays and merge without it.
changes_replication = True

TIER_TABLES = ("working_items", "episodic_items", "semantic_items")


def upgrade() -> None:
    for table in TIER_TABLES:
        with op.batch_alter_table(table, recreate="never") as batch:
            batch.add_column(sa.Column("item_key", Str, nullable=True))
            batch.add_column(sa.Column("namespace_ts", Int64, server_default="0", nullable=False))
            batch.add_column(
                sa.Column("namespace_origin", Str, server_default=sa.text("''"), nullable=False)
            )
            batch.add_column(
                sa.Column("namespace", Str, server_default=sa.text("''"), nullable=False)
            )
        op.create_index(f"ix_{table}_namespace", table, ["namespace"])


def downgrade() -> None:
    for table in TIER_TABLES:
        op.drop_index(f"ix_{table}_namespace", table_name=table)
        with op.batch_alter_table(table, recreate="never") as batch:
            batch.drop_column("namespace")
            batch.drop_column("namespace_origin")
            batch.drop_column("namespace_ts")
            batch.drop_column("item_key")
