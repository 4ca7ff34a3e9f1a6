"""Tier digests: per tier and bucket of item ids, the sum of the row hashes, for anti-entropy.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

Creates ``tier_digests`` and fills it from the rows of every tier (a full read of each tier,
once), so an upgraded store holds exactly what a fresh computation gives
(memrepl.storage.digests). From then on every write keeps it up to date in its own transaction.

Changes replication: nodes from this revision on answer anti-entropy digest queries and settle
two states with the same writes but different content (a hand edit) by a deterministic rule
(memrepl.merge, ``same-version``); a node before it would keep its own copy of such an item,
so the two would never converge.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from memrepl.storage.sqltypes import Int64

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Digest exchange and the same-version merge rule (see the docstring).
changes_replication = True


def upgrade() -> None:
    op.create_table(
        "tier_digests",
        sa.Column("tier", Int64, nullable=False),
        sa.Column("bucket", Int64, nullable=False),
        sa.Column("digest", Int64, nullable=False),
        sa.Column("row_count", Int64, nullable=False),
        sa.PrimaryKeyConstraint("tier", "bucket"),
    )
    # The digest of a row is the code's (memrepl.storage.digests): if it ever changes, a new
    # migration refills the table the same way.
    from memrepl.storage import digests
    from memrepl.storage.schema import TIER_SPECS

    if context.is_offline_mode():
        # ``alembic upgrade --sql`` prints DDL only: the table starts empty, and a node's
        # digest check (memrepl.sync.antientropy) refills it from the rows.
        return
    bind = op.get_bind()
    for spec in TIER_SPECS.values():
        digests.rebuild(bind, spec)


def downgrade() -> None:
    op.drop_table("tier_digests")
