"""jobs, their history and progress; agents; models (presets until the registry issue)

Revision ID: 0002_jobs
Revises: 0001_auth
Create Date: 2026-11-26
"""

from alembic import op

revision = "0002_jobs"
down_revision = "0001_auth"
branch_labels = None
depends_on = None

STATEMENTS = """
CREATE TABLE models (
    id              text PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    source          text NOT NULL CHECK (source IN ('preset', 'job')),
    path            text NOT NULL,
    owner_id        text REFERENCES users(id) ON DELETE CASCADE,
    job_id          text,
    parameter_count bigint,
    template        text NOT NULL DEFAULT 'default',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE agents (
    id          text PRIMARY KEY,
    hostname    text NOT NULL,
    gpus        jsonb NOT NULL DEFAULT '[]',
    cpu_slots   integer NOT NULL DEFAULT 0,
    resources   jsonb NOT NULL DEFAULT '{}',
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE jobs (
    id               text PRIMARY KEY,
    owner_id         text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind             text NOT NULL CHECK (kind IN ('train', 'eval', 'export', 'deploy')),
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'dispatched', 'running', 'succeeded', 'failed', 'cancelled')),
    priority         integer NOT NULL DEFAULT 0,
    gpu_count        integer NOT NULL DEFAULT 1,
    request          jsonb NOT NULL,
    config           jsonb NOT NULL,
    config_yaml      text NOT NULL,
    estimate         jsonb NOT NULL DEFAULT '{}',
    agent_id         text,
    gpu_ids          integer[] NOT NULL DEFAULT '{}',
    reason           text,
    message          text,
    cancel_requested boolean NOT NULL DEFAULT false,
    attempt          integer NOT NULL DEFAULT 0,
    progress         jsonb,
    metrics          jsonb,
    dispatched_at    timestamptz,
    started_at       timestamptz,
    finished_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_queue ON jobs (priority DESC, created_at) WHERE state = 'pending';
CREATE INDEX jobs_owner ON jobs (owner_id, created_at DESC);
CREATE INDEX jobs_active_agent ON jobs (agent_id) WHERE state IN ('dispatched', 'running');
CREATE TABLE job_events (
    id      bigserial PRIMARY KEY,
    job_id  text NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    state   text NOT NULL,
    reason  text,
    message text,
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_events_job ON job_events (job_id, id);
CREATE TABLE job_progress (
    job_id        text NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    step          integer NOT NULL,
    total_steps   integer NOT NULL,
    loss          double precision,
    learning_rate double precision,
    epoch         double precision,
    elapsed_s     double precision,
    remaining_s   double precision,
    at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, step)
)
"""


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in STATEMENTS.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE job_progress, job_events, jobs, agents, models")
