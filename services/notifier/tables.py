"""SQLAlchemy Core view of the notifier's tables (the schema itself is Alembic's)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData()
TS = sa.TIMESTAMP(timezone=True)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("dedup_key", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("severity", sa.Text, nullable=False),
    sa.Column("urgency", sa.Text, nullable=False, server_default="high"),  # low: recorded, not paged
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("stream_id", sa.Text),
    sa.Column("region", sa.Text),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("detected_at", TS, nullable=False),
    sa.Column("detected_event_at", TS, nullable=False),  # first signal's event time; group waits run on it
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("last_signal_at", TS, nullable=False),
    sa.Column("resolved_at", TS),
    sa.Column("report_count", sa.Integer, nullable=False),
    sa.Column("signal_count", sa.Integer, nullable=False),
    sa.Column("factors", pg.JSONB, nullable=False),
    sa.Column("sample_report_ids", pg.JSONB, nullable=False),
    sa.Column("team", sa.Text),
    sa.Column("acknowledged_at", TS),
    sa.Column("acknowledged_by", sa.Text),
    sa.Column("resolved_by", sa.Text),
    sa.Column("resolved_how", sa.Text),
    sa.Column("first_action_at", TS),
    sa.Column("time_to_action_s", sa.Float),
    sa.Column("assignee", sa.Text),
    sa.Column("escalation_policy", sa.Text),
    sa.Column("escalation_level", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_escalation_at", TS),
    sa.Column("silenced_by", pg.UUID(as_uuid=True)),
)

incident_signals = sa.Table(
    "incident_signals",
    metadata,
    sa.Column("signal_id", sa.Text, primary_key=True),
    sa.Column("incident_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("severity", sa.Text, nullable=False),
    sa.Column("received_at", TS, nullable=False),
    sa.Column("payload", pg.JSONB, nullable=False),
)

incident_timeline = sa.Table(
    "incident_timeline",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("incident_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("detail", pg.JSONB, nullable=False),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("incident_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("payload", pg.JSONB, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", TS, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("sent_at", TS),
    sa.Column("last_error", sa.Text),
)

notification_attempts = sa.Table(
    "notification_attempts",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("notification_id", sa.BigInteger, nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("duration_ms", sa.Float, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("secret_hash", sa.Text, nullable=False),
    sa.Column("scopes", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("revoked_at", TS),
    sa.Column("last_used_at", TS),
)

silences = sa.Table(
    "silences",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("matchers", pg.JSONB, nullable=False),
    sa.Column("starts_at", TS, nullable=False),
    sa.Column("ends_at", TS, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expired_at", TS),
)

inhibit_rules = sa.Table(
    "inhibit_rules",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("source_match", pg.JSONB, nullable=False),
    sa.Column("target_match", pg.JSONB, nullable=False),
    sa.Column("equal", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

moderation_actions = sa.Table(
    "moderation_actions",
    metadata,
    sa.Column("action_id", sa.Text, primary_key=True),
    sa.Column("stream_id", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("acted_at", TS, nullable=False),
    sa.Column("received_at", TS, nullable=False),
    sa.Column("payload", pg.JSONB, nullable=False),
)

incident_severity = sa.Table(
    "incident_severity",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("incident_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Column("severity", sa.Text, nullable=False),
)

incident_rate = sa.Table(
    "incident_rate",
    metadata,
    sa.Column("incident_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("at", TS, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("hop_s", sa.Integer, nullable=False),
    sa.Column("window_s", sa.Integer, nullable=False),
    sa.Column("baseline", sa.Float, nullable=False),
    sa.Column("upper", sa.Float, nullable=False),
)
