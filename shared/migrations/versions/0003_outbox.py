"""Notification outbox and delivery attempts; incident ownership and acknowledgement.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.add_column("incidents", sa.Column("team", sa.Text))
    op.add_column("incidents", sa.Column("acknowledged_at", TS))
    op.add_column("incidents", sa.Column("acknowledged_by", sa.Text))
    op.add_column("incidents", sa.Column("resolved_by", sa.Text))
    op.add_column("incidents", sa.Column("resolved_how", sa.Text))

    # The outbox: written in the same transaction as the incident change it announces.
    # ``key`` is derived from the change, so a redelivered signal cannot enqueue it twice,
    # and it is sent as the Idempotency-Key of every attempt.
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("key", sa.Text, nullable=False, unique=True),
        sa.Column("incident_id", pg.UUID(as_uuid=True), sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("payload", pg.JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS),
        sa.Column("last_error", sa.Text),
        sa.CheckConstraint("status IN ('pending','sent','dead')", name="notification_status_known"),
    )
    op.create_index(
        "notifications_due", "notifications", ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("notifications_incident", "notifications", ["incident_id", "id"])
    op.create_table(
        "notification_attempts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("notification_id", sa.BigInteger, sa.ForeignKey("notifications.id"), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("duration_ms", sa.Float, nullable=False),
    )
    op.create_index("notification_attempts_notification", "notification_attempts", ["notification_id"])


def downgrade() -> None:
    op.drop_table("notification_attempts")
    op.drop_table("notifications")
    for col in ("resolved_how", "resolved_by", "acknowledged_by", "acknowledged_at", "team"):
        op.drop_column("incidents", col)
