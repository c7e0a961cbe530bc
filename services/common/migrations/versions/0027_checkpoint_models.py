"""checkpoint models: a kept checkpoint of a training job registered as a model on demand; the job's own output
stays one model per job, each (job, step) one live model

Revision ID: 0027_checkpoint_models
Revises: 0026_trained_tokens
Create Date: 2026-12-04
"""

from alembic import op

revision = "0027_checkpoint_models"
down_revision = "0026_trained_tokens"
branch_labels = None
depends_on = None

# A deleted checkpoint model is asked for again by its owner, not by a redelivered result: only live ones count.
STATEMENTS = """
ALTER TABLE models ADD COLUMN checkpoint_step integer;
DROP INDEX models_job;
CREATE UNIQUE INDEX models_job ON models (job_id) WHERE job_id IS NOT NULL AND checkpoint_step IS NULL;
CREATE UNIQUE INDEX models_job_checkpoint ON models (job_id, checkpoint_step)
    WHERE checkpoint_step IS NOT NULL AND deleted_at IS NULL
"""

DOWNGRADE = """
DELETE FROM models WHERE checkpoint_step IS NOT NULL;
DROP INDEX models_job_checkpoint;
DROP INDEX models_job;
CREATE UNIQUE INDEX models_job ON models (job_id) WHERE job_id IS NOT NULL;
ALTER TABLE models DROP COLUMN checkpoint_step
"""


def _run(statements: str) -> None:
    # asyncpg runs one statement per call.
    for statement in statements.split(";"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _run(STATEMENTS)


def downgrade() -> None:
    _run(DOWNGRADE)
