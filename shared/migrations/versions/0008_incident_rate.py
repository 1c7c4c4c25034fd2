"""The report-rate series of an incident (per-hop counts and the baseline), for its chart.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # keyed by (incident, hop start): a redelivered signal rewrites nothing
    op.create_table(
        "incident_rate",
        sa.Column("incident_id", sa.Uuid, sa.ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("hop_s", sa.Integer, nullable=False),
        sa.Column("window_s", sa.Integer, nullable=False),
        sa.Column("baseline", sa.Float, nullable=False),
        sa.Column("upper", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "at"),
    )


def downgrade() -> None:
    op.drop_table("incident_rate")
