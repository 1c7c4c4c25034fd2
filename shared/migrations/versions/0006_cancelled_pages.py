"""Notifications can be cancelled: a trigger still waiting out its group wait when the
incident resolves is never sent (a flap pages nobody).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("notification_status_known", "notifications", type_="check")
    op.create_check_constraint(
        "notification_status_known", "notifications", "status IN ('pending','sent','dead','cancelled')"
    )


def downgrade() -> None:
    op.execute("UPDATE notifications SET status = 'dead' WHERE status = 'cancelled'")
    op.drop_constraint("notification_status_known", "notifications", type_="check")
    op.create_check_constraint(
        "notification_status_known", "notifications", "status IN ('pending','sent','dead')"
    )
