"""Drop ix_conflicts_tier_item: the pair's unique index already starts with (tier, item_id).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

SQLite answers a lookup by (tier, item_id) from the leftmost columns of ``uq_conflicts_pair``
just as well (tests/storage/test_query_plan.py), so the second index only cost every logged
conflict one more b-tree insert (about 0.6 µs per item of bench/sync_bench.py's mix) and its
pages on disk. Storage only: peers on 0002 and 0003 keep syncing (``changes_replication``).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Local storage only: what peers exchange and how they merge it is unchanged.
changes_replication = False


def upgrade() -> None:
    op.drop_index("ix_conflicts_tier_item", table_name="conflicts")


def downgrade() -> None:
    op.create_index("ix_conflicts_tier_item", "conflicts", ["tier", "item_id"])
