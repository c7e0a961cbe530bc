"""job tracking: where a training job reports its experiments (MLflow, W&B, TensorBoard) and the MLflow run it has

Revision ID: 0024_job_tracking
Revises: 0022_fine_tuning_jobs (0023_user_secrets once the lead re-chains it)
Create Date: 2026-12-04
"""

from alembic import op

revision = "0024_job_tracking"
# The lead re-chains onto "0023_user_secrets" at merge (which adds jobs.secret_names too: IF NOT EXISTS below).
down_revision = "0022_fine_tuning_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The tracking the job runs with (W&B forced offline where the admin says so), and MLflow's run_id and
    # experiment_id once the agent created the run (JobTracked): services/scheduler/jobs/tracking.py.
    op.execute("ALTER TABLE jobs ADD COLUMN tracking jsonb")
    # The secret variables the job may receive (the secrets store's column; here for a branch without it).
    op.execute("ALTER TABLE jobs ADD COLUMN IF NOT EXISTS secret_names text[] NOT NULL DEFAULT '{}'")


def downgrade() -> None:
    op.execute("ALTER TABLE jobs DROP COLUMN tracking")
