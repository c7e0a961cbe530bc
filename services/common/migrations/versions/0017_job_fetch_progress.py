"""job fetch progress: how far the agent is in bringing a job's inputs from the store (`objects` storage mode)

Revision ID: 0017_job_fetch_progress
Revises: 0016_job_fetches
Create Date: 2026-12-03
"""

from alembic import op

revision = "0017_job_fetch_progress"
down_revision = "0016_job_fetches"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The newest JobFetchProgressed of the job (its attempt with it): {attempt, input, done_bytes, total_bytes, at}.
    op.execute("ALTER TABLE jobs ADD COLUMN fetch_progress jsonb")


def downgrade() -> None:
    op.execute("ALTER TABLE jobs DROP COLUMN fetch_progress")
