"""Indexes for filtered incident lists (newest first within a category/severity/status).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "incidents_category_severity_status_newest", "incidents",
        ["category", "severity", "status", sa.text("detected_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "incidents_severity_status_newest", "incidents",
        ["severity", "status", sa.text("detected_at DESC"), sa.text("id DESC")],
    )


def downgrade() -> None:
    op.drop_index("incidents_severity_status_newest", "incidents")
    op.drop_index("incidents_category_severity_status_newest", "incidents")
