"""a training job's evaluation curve: the validation loss the trainer logs every eval_steps, stored beside the
training loss of the same step

Revision ID: 0009_eval_curves
Revises: 0008_queue
Create Date: 2026-11-26
"""

from alembic import op

revision = "0009_eval_curves"
down_revision = "0008_queue"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE job_progress ADD COLUMN eval_loss double precision")


def downgrade() -> None:
    op.execute("ALTER TABLE job_progress DROP COLUMN eval_loss")
