"""Filing options that replicate, and expiry on every tier.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

- ``item_options`` on each tier table: the filing options a write files an item with, beside its
  namespace and key (memrepl.filing: the content paths the vector index embeds, a TTL). Part of
  the placement register, they travel with the item (a fifth element of the batch metadata's
  ``"p"`` entry, when there are some) and merge with it. Existing items have none.
- ``expires_at_ns`` (indexed) on the episodic and semantic tables, as the working table has:
  when this node forgets the item (memrepl.storage.expiry).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from memrepl.storage.sqltypes import Int64, Str

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Filing options travel with items and merge as part of their state: a node before this
#: revision would refuse them (a five-element placement) or drop them from what it relays.
changes_replication = True

TIER_TABLES = ("working_items", "episodic_items", "semantic_items")
#: The tables that had no expiry column before this revision.
NEWLY_EXPIRING = ("episodic_items", "semantic_items")


def upgrade() -> None:
    for table in TIER_TABLES:
        with op.batch_alter_table(table, recreate="never") as batch:
            batch.add_column(
                sa.Column("item_options", Str, server_default=sa.text("''"), nullable=False)
            )
    for table in NEWLY_EXPIRING:
        with op.batch_alter_table(table, recreate="never") as batch:
            batch.add_column(sa.Column("expires_at_ns", Int64, nullable=True))
        op.create_index(f"ix_{table}_expires_at_ns", table, ["expires_at_ns"])


def downgrade() -> None:
    for table in NEWLY_EXPIRING:
        op.drop_index(f"ix_{table}_expires_at_ns", table_name=table)
        with op.batch_alter_table(table, recreate="never") as batch:
            batch.drop_column("expires_at_ns")
    for table in TIER_TABLES:
        with op.batch_alter_table(table, recreate="never") as batch:
            batch.drop_column("item_options")
