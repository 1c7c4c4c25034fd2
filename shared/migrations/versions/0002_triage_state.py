"""Triage state: per-partition checkpoints (state + offset together) and evicted baselines.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    # The window state of a partition and the offset it is valid at commit together:
    # restoring one restores the other, so a restart neither loses nor double-counts.
    op.create_table(
        "triage_checkpoints",
        sa.Column("group_id", sa.Text, primary_key=True),
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("snapshot", sa.LargeBinary, nullable=False),
        sa.Column("outbox", sa.LargeBinary),  # trend tallies to (re)publish after commit
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    )
    # Baselines of keys evicted from memory (idle), restored when the key comes back.
    op.create_table(
        "triage_baselines",
        sa.Column("group_id", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("mean", sa.Float, nullable=False),
        sa.Column("var", sa.Float, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("closed_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("triage_baselines_closed", "triage_baselines", ["group_id", "closed_ms"])


def downgrade() -> None:
    op.drop_table("triage_baselines")
    op.drop_table("triage_checkpoints")
