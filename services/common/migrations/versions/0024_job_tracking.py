"""job tracking: where a training job reports its experiments (MLflow, W&B, TensorBoard) and the MLflow run it has

Revision ID: 0024_job_tracking
Revises: 0023_user_secrets
Create Date: 2026-12-04
"""

from alembic import op

revision = "0024_job_tracking"
down_revision = "0023_user_secrets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The tracking the job runs with (W&B forced offline where the admin says so), and MLflow's run_id and
    # experiment_id once the agent created the run (JobTracked): services/scheduler/jobs/tracking.py.
    op.execute("ALTER TABLE jobs ADD COLUMN tracking jsonb")


def downgrade() -> None:
    op.execute("ALTER TABLE jobs DROP COLUMN tracking")
