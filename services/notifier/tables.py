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
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("stream_id", sa.Text),
    sa.Column("region", sa.Text),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("detected_at", TS, nullable=False),
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
