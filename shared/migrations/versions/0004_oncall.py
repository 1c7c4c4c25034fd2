"""API keys, silences, inhibition rules, moderation actions, escalation state.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    # API keys: only a SHA-256 of the (high-entropy, random) secret is stored.
    op.create_table(
        "api_keys",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("prefix", sa.Text, nullable=False, unique=True),
        sa.Column("secret_hash", sa.Text, nullable=False),
        sa.Column("scopes", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
        sa.Column("last_used_at", TS),
    )

    op.create_table(
        "silences",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("matchers", pg.JSONB, nullable=False),  # {"category": ["spam"], "region": ["BR"]}
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expired_at", TS),
        sa.CheckConstraint("ends_at > starts_at", name="silence_ends_after_start"),
    )
    op.create_index("silences_active", "silences", ["ends_at"])

    # Alertmanager-style: an open incident matching ``source`` inhibits pages of incidents
    # matching ``target`` that agree with it on every field of ``equal``.
    op.create_table(
        "inhibit_rules",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("source_match", pg.JSONB, nullable=False),
        sa.Column("target_match", pg.JSONB, nullable=False),
        sa.Column("equal", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )

    op.create_table(
        "moderation_actions",
        sa.Column("action_id", sa.Text, primary_key=True),
        sa.Column("stream_id", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("acted_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("payload", pg.JSONB, nullable=False),
    )
    op.create_index("moderation_actions_stream", "moderation_actions", ["stream_id", "acted_at"])

    op.add_column("incidents", sa.Column("first_action_at", TS))
    op.add_column("incidents", sa.Column("time_to_action_s", sa.Float))
    op.add_column("incidents", sa.Column("assignee", sa.Text))
    op.add_column("incidents", sa.Column("escalation_policy", sa.Text))
    op.add_column("incidents", sa.Column("escalation_level", sa.Integer, nullable=False, server_default="0"))
    op.add_column("incidents", sa.Column("next_escalation_at", TS))
    op.add_column("incidents", sa.Column("silenced_by", pg.UUID(as_uuid=True)))
    op.create_index(
        "incidents_escalation_due", "incidents", ["next_escalation_at"],
        postgresql_where=sa.text("status = 'triggered' AND next_escalation_at IS NOT NULL"),
    )
    op.create_index("incidents_open_stream", "incidents", ["stream_id"],
                    postgresql_where=sa.text("status <> 'resolved'"))

    # Severity history: every level an incident has had, and when.
    op.create_table(
        "incident_severity",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("incident_id", pg.UUID(as_uuid=True), sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
    )
    op.create_index("incident_severity_incident", "incident_severity", ["incident_id", "id"])


def downgrade() -> None:
    op.drop_table("incident_severity")
    op.drop_index("incidents_open_stream", "incidents")
    op.drop_index("incidents_escalation_due", "incidents")
    for col in ("silenced_by", "next_escalation_at", "escalation_level", "escalation_policy", "assignee",
                "time_to_action_s", "first_action_at"):
        op.drop_column("incidents", col)
    op.drop_table("moderation_actions")
    op.drop_table("inhibit_rules")
    op.drop_table("silences")
    op.drop_table("api_keys")
