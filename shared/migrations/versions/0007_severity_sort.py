"""Index for incident lists sorted by severity (SEV1 first, newest first within a severity).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "incidents_severity_newest", "incidents",
        ["severity", sa.text("detected_at DESC"), sa.text("id DESC")],
    )


def downgrade() -> None:
    op.drop_index("incidents_severity_newest", "incidents")
