"""the queue's fairness and recovery: why a pending job waits, how often a job was re-queued after losing its
agent, and per-user quotas on concurrent GPUs and queued jobs

Revision ID: 0008_queue
Revises: 0007_fleet
Create Date: 2026-11-26
"""

from alembic import op

revision = "0008_queue"
down_revision = "0007_fleet"
branch_labels = None
depends_on = None

STATEMENTS = """
ALTER TABLE jobs ADD COLUMN wait_reason text;
ALTER TABLE jobs ADD COLUMN requeues integer NOT NULL DEFAULT 0;
ALTER TABLE user_quotas ADD COLUMN max_gpus integer CHECK (max_gpus >= 0);
ALTER TABLE user_quotas ADD COLUMN max_queued integer CHECK (max_queued >= 0);
CREATE INDEX jobs_gpu_usage ON jobs (owner_id, finished_at) WHERE gpu_count > 0 AND started_at IS NOT NULL
"""


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in STATEMENTS.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX jobs_gpu_usage")
    op.execute("ALTER TABLE user_quotas DROP COLUMN max_queued")
    op.execute("ALTER TABLE user_quotas DROP COLUMN max_gpus")
    op.execute("ALTER TABLE jobs DROP COLUMN requeues")
    op.execute("ALTER TABLE jobs DROP COLUMN wait_reason")
