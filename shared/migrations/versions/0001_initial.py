"""Initial schema: ingest dedup, incidents, their signals and timeline.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    # Ingest remembers each report_id with the record that first carried it, so a
    # redelivery of that same record is republished while a true duplicate is dropped.
    op.create_table(
        "ingest_dedup",
        sa.Column("report_id", sa.Text, primary_key=True),
        sa.Column("src_partition", sa.Integer, nullable=False),
        sa.Column("src_offset", sa.BigInteger, nullable=False),
        sa.Column("first_seen", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ingest_dedup_first_seen", "ingest_dedup", ["first_seen"])

    op.create_table(
        "incidents",
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
        sa.CheckConstraint("status IN ('triggered','acknowledged','resolved')", name="status_known"),
        sa.CheckConstraint("severity IN ('SEV1','SEV2','SEV3','SEV4')", name="severity_known"),
    )
    # One open incident per key: the database, not the code, guarantees it.
    op.create_index(
        "incidents_one_open_per_key",
        "incidents",
        ["dedup_key"],
        unique=True,
        postgresql_where=sa.text("status <> 'resolved'"),
    )
    op.create_index("incidents_newest", "incidents", [sa.text("detected_at DESC"), sa.text("id DESC")])
    op.create_index(
        "incidents_status_newest", "incidents", ["status", sa.text("detected_at DESC"), sa.text("id DESC")]
    )
    op.create_index("incidents_stream", "incidents", ["stream_id", sa.text("detected_at DESC")])

    # Every signal applied, keyed by its deterministic id: a redelivered signal is a no-op.
    op.create_table(
        "incident_signals",
        sa.Column("signal_id", sa.Text, primary_key=True),
        sa.Column("incident_id", pg.UUID(as_uuid=True), sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("payload", pg.JSONB, nullable=False),
    )
    op.create_index("incident_signals_incident", "incident_signals", ["incident_id"])

    op.create_table(
        "incident_timeline",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("incident_id", pg.UUID(as_uuid=True), sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("detail", pg.JSONB, nullable=False),
    )
    op.create_index("incident_timeline_incident", "incident_timeline", ["incident_id", "id"])


def downgrade() -> None:
    op.drop_table("incident_timeline")
    op.drop_table("incident_signals")
    op.drop_table("incidents")
    op.drop_table("ingest_dedup")
