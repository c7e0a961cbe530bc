"""the GPU fleet: agent state (draining, offline since), what agents run on, and their resource history
(raw samples, then 1-minute and 1-hour averages; step_s says which)

Revision ID: 0007_fleet
Revises: 0006_deployments
Create Date: 2026-11-26
"""

from alembic import op

revision = "0007_fleet"
down_revision = "0006_deployments"
branch_labels = None
depends_on = None

STATEMENTS = """
ALTER TABLE agents ADD COLUMN draining boolean NOT NULL DEFAULT false;
ALTER TABLE agents ADD COLUMN offline_since timestamptz;
ALTER TABLE agents ADD COLUMN version text NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN runtime text NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN last_beat_at timestamptz;
CREATE TABLE agent_metrics (
    agent_id        text NOT NULL,
    step_s          integer NOT NULL,
    at              timestamptz NOT NULL,
    samples         integer NOT NULL,
    cpu_pct         real,
    memory_used_mb  real,
    memory_total_mb real,
    running_jobs    real,
    PRIMARY KEY (agent_id, step_s, at)
);
CREATE INDEX agent_metrics_age ON agent_metrics (step_s, at);
CREATE TABLE agent_gpu_metrics (
    agent_id        text NOT NULL,
    step_s          integer NOT NULL,
    at              timestamptz NOT NULL,
    gpu_index       smallint NOT NULL,
    samples         integer NOT NULL,
    utilization_pct real,
    memory_used_mb  real,
    memory_total_mb real,
    temperature_c   real,
    power_w         real,
    PRIMARY KEY (agent_id, step_s, at, gpu_index)
);
CREATE INDEX agent_gpu_metrics_age ON agent_gpu_metrics (step_s, at)
"""


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in STATEMENTS.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE agent_gpu_metrics")
    op.execute("DROP TABLE agent_metrics")
    for column in ("last_beat_at", "runtime", "version", "offline_since", "draining"):
        op.execute(f"ALTER TABLE agents DROP COLUMN {column}")
