"""a fine-tuning job's results: the tokens each progress point had trained on, and its results file (OpenAI's
`result_files`): a file of the job's owner with purpose `fine-tune-results`, its CSV kept in the row (no dataset
behind it), one per job (`source_job`); the job remembers the file's id even after the owner deletes the file

Revision ID: 0026_trained_tokens
Revises: 0025_job_checkpoints
Create Date: 2026-12-04
"""

from alembic import op

revision = "0026_trained_tokens"
down_revision = "0025_job_checkpoints"
branch_labels = None
depends_on = None

STATEMENTS = """
ALTER TABLE job_progress ADD COLUMN tokens_seen bigint;
ALTER TABLE openai_files ALTER COLUMN dataset_id DROP NOT NULL;
ALTER TABLE openai_files DROP CONSTRAINT openai_files_kind_check;
ALTER TABLE openai_files ADD CONSTRAINT openai_files_kind_check CHECK (kind IN ('chat', 'preference', 'results'));
ALTER TABLE openai_files ADD COLUMN source_job text UNIQUE;
ALTER TABLE openai_files ADD COLUMN content bytea;
ALTER TABLE openai_files ADD CONSTRAINT openai_files_stored CHECK ((dataset_id IS NULL) = (content IS NOT NULL));
ALTER TABLE fine_tuning_jobs ADD COLUMN result_file text
"""

DOWN = """
ALTER TABLE fine_tuning_jobs DROP COLUMN result_file;
DELETE FROM openai_files WHERE dataset_id IS NULL;
ALTER TABLE openai_files DROP CONSTRAINT openai_files_stored;
ALTER TABLE openai_files DROP COLUMN content;
ALTER TABLE openai_files DROP COLUMN source_job;
ALTER TABLE openai_files DROP CONSTRAINT openai_files_kind_check;
ALTER TABLE openai_files ADD CONSTRAINT openai_files_kind_check CHECK (kind IN ('chat', 'preference'));
ALTER TABLE openai_files ALTER COLUMN dataset_id SET NOT NULL;
ALTER TABLE job_progress DROP COLUMN tokens_seen
"""


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in STATEMENTS.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    for statement in DOWN.split(";"):
        if statement.strip():
            op.execute(statement)
