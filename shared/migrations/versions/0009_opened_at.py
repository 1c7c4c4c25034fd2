"""The event time an incident opened at (its first signal's ``observed_at``).

Group waits are decided on the incident's own times, not on when the notifier happened to
read the signal, so a catch-up after an outage pages what a live feed pages.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: incidents opened before this revision fall back to detected_at
    op.add_column("incidents", sa.Column("opened_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("incidents", "opened_at")
