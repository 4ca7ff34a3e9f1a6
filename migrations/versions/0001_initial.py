"""The initial schema: the three tier tables, node, conflicts, sync_vectors, inbound_cursors.

Revision ID: 0001
Revises:
Create Date: 2025-11-25

A migration is a frozen record of the DDL it ran, so it repeats the columns here rather than
importing memrepl.storage.schema (which will move on); tests check that the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from memrepl.storage.sqltypes import Int64, Str

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The first schema: everything peers exchange starts here.
changes_replication = True

TIER_TABLES = ("working_items", "episodic_items", "semantic_items")


def _item_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("item_id", Str, nullable=False),
        sa.Column("content", Str, nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("version_ts", Int64, nullable=False),
        sa.Column("version_origin", Str, nullable=False),
        sa.Column("whole_ts", Int64, nullable=False),
        sa.Column("whole_origin", Str, nullable=False),
        sa.Column("whole_deleted", sa.Boolean(), nullable=False),
        sa.Column("field_clocks", Str, nullable=False),
        sa.Column("causal_context", Str, nullable=False),
        sa.Column("priority", Int64, nullable=False),
        sa.Column("modified_at", Int64, nullable=False),
        sa.Column("received_from", Str, nullable=True),
        sa.Column("created_at_ns", Int64, nullable=False),
        sa.Column("access_count", Int64, server_default="0", nullable=False),
        sa.Column("last_accessed_ns", Int64, nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "working_items",
        *_item_columns(),
        sa.Column("pinned", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("expires_at_ns", Int64, nullable=True),
        sa.PrimaryKeyConstraint("item_id"),
    )
    op.create_index("ix_working_items_expires_at_ns", "working_items", ["expires_at_ns"])

    op.create_table(
        "episodic_items",
        *_item_columns(),
        sa.Column("episode_id", Str, nullable=True),
        sa.Column("occurred_at_ns", Int64, nullable=True),
        sa.PrimaryKeyConstraint("item_id"),
    )
    op.create_index(
        "ix_episodic_items_episode_occurred", "episodic_items", ["episode_id", "occurred_at_ns"]
    )
    op.create_index(
        "ix_episodic_items_occurred_episode", "episodic_items", ["occurred_at_ns", "episode_id"]
    )

    op.create_table(
        "semantic_items",
        *_item_columns(),
        sa.Column("kind", Str, nullable=True),
        sa.Column("source_id", Str, nullable=True),
        sa.Column("target_id", Str, nullable=True),
        sa.Column("relation", Str, nullable=True),
        sa.PrimaryKeyConstraint("item_id"),
    )
    op.create_index("ix_semantic_items_source_id", "semantic_items", ["source_id"])
    op.create_index("ix_semantic_items_target_id", "semantic_items", ["target_id"])

    for table in TIER_TABLES:
        op.create_index(f"ix_{table}_modified_at", table, ["modified_at"], unique=True)

    op.create_table(
        "node",
        sa.Column("id", Int64, autoincrement=False, nullable=False),
        sa.Column("node_id", Str, nullable=False),
        sa.Column("clock_last_ns", Int64, nullable=False),
        sa.Column("created_at_ns", Int64, nullable=False),
        sa.Column("created_by_version", Str, nullable=False),
        sa.CheckConstraint("id = 1", name="ck_node_single_row"),
        sa.PrimaryKeyConstraint("id"),
    )

    op.create_table(
        "conflicts",
        sa.Column("id", Int64, autoincrement=True, nullable=False),
        sa.Column("tier", Int64, nullable=False),
        sa.Column("item_id", Str, nullable=False),
        sa.Column("winner_ts", Int64, nullable=False),
        sa.Column("winner_origin", Str, nullable=False),
        sa.Column("winner_content", Str, nullable=False),
        sa.Column("winner_deleted", sa.Boolean(), nullable=False),
        sa.Column("winner_context", Str, nullable=False),
        sa.Column("loser_ts", Int64, nullable=False),
        sa.Column("loser_origin", Str, nullable=False),
        sa.Column("loser_content", Str, nullable=False),
        sa.Column("loser_deleted", sa.Boolean(), nullable=False),
        sa.Column("loser_context", Str, nullable=False),
        sa.Column("resolved_content", Str, nullable=False),
        sa.Column("rule", Str, nullable=False),
        sa.Column("peer_id", Str, nullable=False),
        sa.Column("batch_id", Str, nullable=True),
        sa.Column("detected_at_ns", Int64, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "tier",
            "item_id",
            "winner_ts",
            "winner_origin",
            "loser_ts",
            "loser_origin",
            name="uq_conflicts_pair",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_conflicts_tier_item", "conflicts", ["tier", "item_id"])
    op.create_index("ix_conflicts_loser_origin", "conflicts", ["loser_origin"])
    op.create_index("ix_conflicts_detected_at_ns", "conflicts", ["detected_at_ns"])

    op.create_table(
        "sync_vectors",
        sa.Column("tier", Int64, nullable=False),
        sa.Column("peer_id", Str, nullable=False),
        sa.Column("acked_cursor", Int64, nullable=False),
        sa.Column("updated_at_ns", Int64, nullable=False),
        sa.PrimaryKeyConstraint("tier", "peer_id"),
    )

    op.create_table(
        "inbound_cursors",
        sa.Column("tier", Int64, nullable=False),
        sa.Column("peer_id", Str, nullable=False),
        sa.Column("applied_cursor", Int64, nullable=False),
        sa.Column("updated_at_ns", Int64, nullable=False),
        sa.PrimaryKeyConstraint("tier", "peer_id"),
    )


def downgrade() -> None:
    for table in ("inbound_cursors", "sync_vectors", "conflicts", "node", *TIER_TABLES):
        op.drop_table(table)
