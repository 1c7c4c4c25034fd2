"""Finding the incident a flapping key resolved a moment ago, to continue it.

A spike that re-opens on the same key within the routing's ``flap_cooldown_s`` continues its
last incident; the lookup is by key among resolved incidents, newest resolution first.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS incidents_resolved_by_key ON incidents (dedup_key, resolved_at DESC) "
        "WHERE status = 'resolved'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS incidents_resolved_by_key")
