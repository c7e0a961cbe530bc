"""when a job's agent first stopped listing it as running in its heartbeats (reconciliation against the agent)

Revision ID: 0011_job_unlisted
Revises: 0010_job_inputs
Create Date: 2026-12-03
"""

from alembic import op

revision = "0011_job_unlisted"
down_revision = "0010_job_inputs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE jobs ADD COLUMN unlisted_since timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE jobs DROP COLUMN unlisted_since")
