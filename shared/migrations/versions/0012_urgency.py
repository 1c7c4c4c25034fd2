"""Incidents get an urgency: ``high`` pages, ``low`` is recorded without paging.

Decided by the route (``high_urgency_from``) on the incident's severity; a low-urgency
incident whose severity rises into its route's high band becomes high and is paged then.
Incidents from before this revision were all paged: they are ``high``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("incidents", sa.Column("urgency", sa.Text, nullable=False, server_default="high"))
    op.create_check_constraint("incidents_urgency", "incidents", "urgency IN ('high', 'low')")


def downgrade() -> None:
    op.drop_constraint("incidents_urgency", "incidents")
    op.drop_column("incidents", "urgency")
