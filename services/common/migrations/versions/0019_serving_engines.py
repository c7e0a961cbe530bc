"""serving engines: which engines an agent has (vllm, llamafactory), which one serves a deployment with its adapter
slots and request limits, the engine's last load as its agent reported it, and usage per user and adapter

Revision ID: 0019_serving_engines
Revises: 0018_idempotency_keys
Create Date: 2026-12-04
"""

from alembic import op

revision = "0019_serving_engines"
down_revision = "0018_idempotency_keys"
branch_labels = None
depends_on = None

# The defaults are contracts.ServeOptions' (a deployment made before this one had them, unused by its engine).
STATEMENTS = """
ALTER TABLE agents ADD COLUMN engines text[] NOT NULL DEFAULT '{}';
ALTER TABLE deployments ADD COLUMN engine text;
ALTER TABLE deployments ADD COLUMN adapter_slots integer NOT NULL DEFAULT 4;
ALTER TABLE deployments ADD COLUMN max_in_flight integer NOT NULL DEFAULT 16;
ALTER TABLE deployments ADD COLUMN max_queue integer NOT NULL DEFAULT 64;
ALTER TABLE deployments ADD COLUMN engine_load jsonb;
CREATE TABLE deployment_usage (
    deployment_id     text NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    user_id           text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    adapter           text NOT NULL,
    requests          bigint NOT NULL DEFAULT 0,
    prompt_tokens     bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    last_request_at   timestamptz NOT NULL,
    PRIMARY KEY (deployment_id, user_id, adapter)
);
CREATE INDEX deployment_usage_user ON deployment_usage (user_id)
"""


def upgrade() -> None:
    # asyncpg runs one statement per call. `adapter` '' is the deployment's base model (a primary key has no NULL).
    for statement in STATEMENTS.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE deployment_usage")
    for column in ("engine_load", "max_queue", "max_in_flight", "adapter_slots", "engine"):
        op.execute(f"ALTER TABLE deployments DROP COLUMN {column}")
    op.execute("ALTER TABLE agents DROP COLUMN engines")
