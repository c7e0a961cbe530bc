"""job checkpoints: each checkpoint a job's trainer saved, as its agent reported it (JobCheckpointSaved), with the
losses logged up to its step; a row goes when the trainer deleted the checkpoint (save_total_limit)

Revision ID: 0025_job_checkpoints
Revises: 0024_job_tracking
Create Date: 2026-12-04
"""

from alembic import op

revision = "0025_job_checkpoints"
down_revision = "0024_job_tracking"
branch_labels = None
depends_on = None

STATEMENTS = """
CREATE TABLE job_checkpoints (
    job_id      text NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    step        integer NOT NULL,
    saved_at    timestamptz NOT NULL,
    attempt     integer NOT NULL,
    agent_id    text,
    train_loss  double precision,
    valid_loss  double precision,
    epoch       double precision,
    PRIMARY KEY (job_id, step)
)
"""


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in STATEMENTS.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE job_checkpoints")
