"""Evicted triage baselines keep the key's memory of its recurring bursts.

``recur`` is that memory as JSON (recurrence.py: the open episode's peak, the recent episodes'
end times and peaks), NULL for a key that had none; rows from before this revision have none and start it again.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("triage_baselines", sa.Column("recur", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("triage_baselines", "recur")
