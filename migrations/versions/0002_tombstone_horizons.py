"""Tombstone horizons: the highest collected tombstone per tier, for snapshot decisions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

A peer whose cursor is below a tier's horizon may have missed a delete that no delta can carry
any more, so the sync manager answers it with a snapshot (memrepl.sync.tombstones).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from memrepl.storage.sqltypes import Int64

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Tombstone collection and the snapshots it forces on peers below the horizon: a node
#: before this revision would answer such a peer with a delta that resurrects deletes.
changes_replication = True


def upgrade() -> None:
    op.create_table(
        "tombstone_horizons",
        sa.Column("tier", Int64, nullable=False),
        sa.Column("purged_through", Int64, nullable=False),
        sa.Column("updated_at_ns", Int64, nullable=False),
        sa.PrimaryKeyConstraint("tier"),
    )


def downgrade() -> None:
    op.drop_table("tombstone_horizons")
