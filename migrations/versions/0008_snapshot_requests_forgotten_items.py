"""Snapshots the receiver asks for, bounded forgetting recorded in forgotten_items, refusals.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27

A node now accepts snapshot batches only inside a snapshot it requested, forgets at its end only
what the sender's purge horizon explains, and records every forgotten item whole in
``forgotten_items``; refused batches are counted per peer in ``sync_refusals`` (read by
``memrepl status``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from memrepl.storage.sqltypes import Int64, Str

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The snapshot exchange changed: a node before this revision sends snapshots nobody asked for
#: (refused) and never asks for one itself, so it would never be brought past a purge horizon.
changes_replication = True


def upgrade() -> None:
    op.create_table(
        "forgotten_items",
        sa.Column("id", Int64, nullable=False),
        sa.Column("tier", Int64, nullable=False),
        sa.Column("item_id", Str, nullable=False),
        sa.Column("content", Str, nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("version_ts", Int64, nullable=False),
        sa.Column("version_origin", Str, nullable=False),
        sa.Column("causal_context", Str, nullable=False),
        sa.Column("modified_at", Int64, nullable=False),
        sa.Column("received_from", Str, nullable=True),
        sa.Column("peer_id", Str, nullable=False),
        sa.Column("snapshot_id", Str, nullable=False),
        sa.Column("purged_through", Int64, nullable=False),
        sa.Column("forgotten_at_ns", Int64, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_forgotten_items_tier_item", "forgotten_items", ["tier", "item_id"])
    op.create_table(
        "sync_refusals",
        sa.Column("peer_id", Str, nullable=False),
        sa.Column("tier", Int64, nullable=False),
        sa.Column("direction", Str, nullable=False),
        sa.Column("code", Str, nullable=False),
        sa.Column("reason", Str, nullable=False),
        sa.Column("count", Int64, nullable=False),
        sa.Column("first_at_ns", Int64, nullable=False),
        sa.Column("last_at_ns", Int64, nullable=False),
        sa.Column("ahead_ns", Int64, nullable=True),
        sa.CheckConstraint(
            "direction IN ('inbound', 'outbound')", name="ck_sync_refusals_direction"
        ),
        sa.PrimaryKeyConstraint("peer_id", "tier", "direction", "code"),
    )


def downgrade() -> None:
    op.drop_table("sync_refusals")
    op.drop_index("ix_forgotten_items_tier_item", table_name="forgotten_items")
    op.drop_table("forgotten_items")
