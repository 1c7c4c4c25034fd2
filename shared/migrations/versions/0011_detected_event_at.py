"""``opened_at`` becomes ``detected_event_at``, the name the API gives it.

The event time of the report that decided the incident (its first signal's ``observed_at``),
next to ``started_at``, the event time of the surge's first report: the difference is the
detection delay the console shows. Incidents from before revision 0009 had no such time; they
take ``detected_at``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("incidents", "opened_at", new_column_name="detected_event_at")
    op.execute("UPDATE incidents SET detected_event_at = detected_at WHERE detected_event_at IS NULL")
    op.alter_column("incidents", "detected_event_at", nullable=False)


def downgrade() -> None:
    op.alter_column("incidents", "detected_event_at", nullable=True)
    op.alter_column("incidents", "detected_event_at", new_column_name="opened_at")
