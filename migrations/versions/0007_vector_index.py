"""The vector index: embedded items per tier, and each tier's embedder and cursor.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

``item_vectors`` holds one unit vector per embedded live item; ``vector_indexes`` which embedder
made them and how far along each tier's change feed it is (memrepl.storage.vector_index). Both
are local and derived: filled after commit by the indexer, never sent to peers. A trigger per
tier table drops an item's vector when its row goes (eviction, expiry, purge, a snapshot's
cleanup), so forgotten items leave no vectors behind.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: A local, derived index: what peers exchange and how they merge it is unchanged.
changes_replication = False

TIER_TABLES = {"working_items": 1, "episodic_items": 2, "semantic_items": 3}


def upgrade() -> None:
    op.create_table(
        "item_vectors",
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("source_modified_at", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.Text(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("tier", "item_id"),
    )
    op.create_index("ix_item_vectors_tier_source", "item_vectors", ["tier", "source_modified_at"])
    op.create_table(
        "vector_indexes",
        sa.Column("tier", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("embedder", sa.Text(), nullable=False),
        sa.Column("dims", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("updated_at_ns", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tier"),
    )
    for items, tier in TIER_TABLES.items():
        op.execute(
            f"CREATE TRIGGER {items}_vectors_delete AFTER DELETE ON {items} BEGIN "
            f"DELETE FROM item_vectors WHERE tier = {tier} AND item_id = OLD.item_id; END"
        )


def downgrade() -> None:
    for items in TIER_TABLES:
        op.execute(f"DROP TRIGGER {items}_vectors_delete")
    op.drop_table("vector_indexes")
    op.drop_index("ix_item_vectors_tier_source", table_name="item_vectors")
    op.drop_table("item_vectors")
