"""idempotency keys: the answer a keyed POST that created a job or a deployment gave, for retries of it

Revision ID: 0018_idempotency_keys
Revises: 0017_job_fetch_progress
Create Date: 2026-12-03
"""

from alembic import op

revision = "0018_idempotency_keys"
down_revision = "0017_job_fetch_progress"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Written by the scheduler in the transaction that stores the job it answers for (scheduler/jobs/idempotency.py).
    op.execute(
        """
CREATE TABLE idempotency_keys (
    user_id     text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key         text NOT NULL,
    route       text NOT NULL,
    body_hash   text NOT NULL,
    status      integer NOT NULL,
    answer      bytea NOT NULL,
    resource_id text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
)"""
    )
    op.execute("CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at)")


def downgrade() -> None:
    op.execute("DROP TABLE idempotency_keys")
