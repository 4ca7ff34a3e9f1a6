"""The vector index: embedded items per tier, and each tier's embedder and cursor.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

``item_vectors`` holds one unit vector per embedded live item; ``vector_indexes`` which embedder
made them and how far along each tier's change feed it is (memrepl.storage.vector_index). Both
are local and derived: filled after commit by the indexer, never sent to peers. A trigger per
tier table drops an item's vector when its row goes (eviction, expiry, purge, a snapshot's
cleanup), so forgotten items leave no vectors behind (on PostgreSQL a statement trigger, with
the deleted rows as a transition table: one DELETE per statement, not per row).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from memrepl.storage.sqltypes import Int64, Str

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
        sa.Column("tier", Int64, nullable=False),
        sa.Column("item_id", Str, nullable=False),
        sa.Column("source_modified_at", Int64, nullable=False),
        sa.Column("namespace", Str, nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("tier", "item_id"),
    )
    op.create_index("ix_item_vectors_tier_source", "item_vectors", ["tier", "source_modified_at"])
    op.create_table(
        "vector_indexes",
        sa.Column("tier", Int64, autoincrement=False, nullable=False),
        sa.Column("embedder", Str, nullable=False),
        sa.Column("dims", Int64, nullable=False),
        sa.Column("cursor", Int64, nullable=False),
        sa.Column("updated_at_ns", Int64, nullable=False),
        sa.PrimaryKeyConstraint("tier"),
    )
    postgresql = op.get_context().dialect.name == "postgresql"
    for items, tier in TIER_TABLES.items():
        for statement in postgresql_triggers(items, tier) if postgresql else triggers(items, tier):
            op.execute(statement)


def triggers(items: str, tier: int) -> list[str]:
    """SQLite: a row trigger that drops the vector of each deleted row."""
    return [
        f"CREATE TRIGGER {items}_vectors_delete AFTER DELETE ON {items} BEGIN "
        f"DELETE FROM item_vectors WHERE tier = {tier} AND item_id = OLD.item_id; END"
    ]


def postgresql_triggers(items: str, tier: int) -> list[str]:
    """PostgreSQL: a statement trigger over the deleted rows (a transition table)."""
    return [
        f"CREATE FUNCTION {items}_vectors_delete() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN DELETE FROM item_vectors v USING gone WHERE v.tier = {tier} "
        "AND v.item_id = gone.item_id; RETURN NULL; END $$",
        f"CREATE TRIGGER {items}_vectors_delete AFTER DELETE ON {items} "
        "REFERENCING OLD TABLE AS gone FOR EACH STATEMENT "
        f"EXECUTE FUNCTION {items}_vectors_delete()",
    ]


def downgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    for items in TIER_TABLES:
        if postgresql:
            op.execute(f"DROP TRIGGER {items}_vectors_delete ON {items}")
            op.execute(f"DROP FUNCTION {items}_vectors_delete()")
        else:
            op.execute(f"DROP TRIGGER {items}_vectors_delete")
    op.drop_table("vector_indexes")
    op.drop_index("ix_item_vectors_tier_source", table_name="item_vectors")
    op.drop_table("item_vectors")
