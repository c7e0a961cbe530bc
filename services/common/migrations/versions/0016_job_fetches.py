"""job fetches: what a job brings from the object store in `objects` storage mode (its inputs and files)

Revision ID: 0016_job_fetches
Revises: 0015_join_tokens
Create Date: 2026-12-03
"""

from alembic import op

revision = "0016_job_fetches"
down_revision = "0015_join_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""ALTER TABLE jobs ADD COLUMN fetches jsonb NOT NULL DEFAULT '{}'""")


def downgrade() -> None:
    op.execute("ALTER TABLE jobs DROP COLUMN fetches")
