"""fine-tuning jobs: OpenAI's face of a training job (its `ftjob-` id, what the caller sent in OpenAI's terms, a
pause asked)

Revision ID: 0022_fine_tuning_jobs
Revises: 0021_openai_files
Create Date: 2026-12-04
"""

from alembic import op

revision = "0022_fine_tuning_jobs"
down_revision = "0021_openai_files"
branch_labels = None
depends_on = None

STATEMENTS = """
CREATE TABLE fine_tuning_jobs (
    id              text PRIMARY KEY,
    job_id          text NOT NULL UNIQUE REFERENCES jobs(id) ON DELETE CASCADE,
    owner_id        text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    model           text NOT NULL,
    training_file   text NOT NULL,
    validation_file text,
    suffix          text,
    seed            bigint NOT NULL,
    metadata        jsonb,
    integrations    jsonb NOT NULL DEFAULT '[]',
    method          jsonb NOT NULL,
    pause_requested boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fine_tuning_jobs_owner ON fine_tuning_jobs (owner_id, created_at DESC, id DESC)
"""


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in STATEMENTS.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE fine_tuning_jobs")
