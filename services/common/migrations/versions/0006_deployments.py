"""deployments: a model served by `llamafactory-cli api` on an agent, as a job of kind 'deploy' (it holds its
GPU slot while it lives) plus what serving needs: generation defaults, readiness, idle timer, usage; per-user quotas
set by admins
(NULL: the platform's default)

Revision ID: 0006_deployments
Revises: 0005_job_stages
Create Date: 2026-11-26
"""

from alembic import op

revision = "0006_deployments"
down_revision = "0005_job_stages"
branch_labels = None
depends_on = None

STATEMENTS = """
CREATE TABLE deployments (
    id               text PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    owner_id         text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    model            text NOT NULL,
    generation       jsonb NOT NULL DEFAULT '{}',
    idle_timeout_s   integer NOT NULL,
    ready_at         timestamptz,
    last_request_at  timestamptz,
    requests_served  bigint NOT NULL DEFAULT 0,
    tokens_generated bigint NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deployments_owner ON deployments (owner_id, created_at DESC);
CREATE TABLE user_quotas (
    user_id          text PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    max_deployments  integer CHECK (max_deployments >= 0),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    updated_by       text
)
"""


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in STATEMENTS.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE user_quotas")
    op.execute("DROP TABLE deployments")
