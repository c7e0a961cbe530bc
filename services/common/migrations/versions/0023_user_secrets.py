"""user secrets: credentials a user's jobs are given (trackers' API keys), encrypted; the secrets a job may receive

Revision ID: 0023_user_secrets
Revises: 0022_fine_tuning_jobs
Create Date: 2026-12-04
"""

from alembic import op

revision = "0023_user_secrets"
down_revision = "0022_fine_tuning_jobs"
branch_labels = None
depends_on = None

# `ciphertext` is AES-GCM (nonce first) under the key LLMCT_SECRETS_KEY names `key_id`, bound to (user_id, name):
# the value is never stored in the clear (services/scheduler/usersecrets/sealing.py).
STATEMENTS = """
CREATE TABLE user_secrets (
    user_id     text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        text NOT NULL,
    ciphertext  bytea NOT NULL,
    key_id      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, name)
);
ALTER TABLE jobs ADD COLUMN secret_names text[] NOT NULL DEFAULT '{}'
"""


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in STATEMENTS.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE jobs DROP COLUMN secret_names")
    op.execute("DROP TABLE user_secrets")
