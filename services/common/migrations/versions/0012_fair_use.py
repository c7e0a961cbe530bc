"""fair use: the highest priority a user may ask and the longest a job of theirs may run (admin-set per user), and
why the platform asked a job to stop (a time limit, not a person)

Revision ID: 0012_fair_use
Revises: 0011_job_unlisted
Create Date: 2026-12-03
"""

from alembic import op

revision = "0012_fair_use"
down_revision = "0011_job_unlisted"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE user_quotas ADD COLUMN max_priority integer CHECK (max_priority BETWEEN -100 AND 100)")
    op.execute("ALTER TABLE user_quotas ADD COLUMN max_run_h real CHECK (max_run_h > 0)")
    op.execute("ALTER TABLE jobs ADD COLUMN stop_reason text")


def downgrade() -> None:
    op.execute("ALTER TABLE jobs DROP COLUMN stop_reason")
    op.execute("ALTER TABLE user_quotas DROP COLUMN max_run_h")
    op.execute("ALTER TABLE user_quotas DROP COLUMN max_priority")
