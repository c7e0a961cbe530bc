"""joining: join tokens an admin hands to a GPU host, their uses, and each joined agent's own NATS user

Revision ID: 0015_join_tokens
Revises: 0014_accounts
Create Date: 2026-12-03
"""

from alembic import op

revision = "0015_join_tokens"
down_revision = "0014_accounts"
branch_labels = None
depends_on = None

# Tokens and NATS passwords are kept as hashes only: a token as sha256 (256 random bits: a lookup by index), a
# NATS password as bcrypt (what nats-server's config accepts in place of the password).
STATEMENTS = """
CREATE TABLE join_tokens (
    id          text PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,
    prefix      text NOT NULL,
    note        text NOT NULL DEFAULT '',
    created_by  text,
    max_uses    integer NOT NULL CHECK (max_uses > 0),
    uses        integer NOT NULL DEFAULT 0 CHECK (uses <= max_uses),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE join_token_uses (
    id         bigserial PRIMARY KEY,
    token_id   text NOT NULL REFERENCES join_tokens(id) ON DELETE CASCADE,
    agent_id   text NOT NULL,
    hostname   text NOT NULL,
    address    text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX join_token_uses_token ON join_token_uses (token_id, at);
CREATE TABLE agent_credentials (
    agent_id       text PRIMARY KEY,
    nats_user      text NOT NULL UNIQUE,
    password_hash  text NOT NULL,
    token_id       text REFERENCES join_tokens(id) ON DELETE SET NULL,
    hostname       text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE join_failures (
    id       bigserial PRIMARY KEY,
    address  text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX join_failures_address_at ON join_failures (address, at)
"""


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in STATEMENTS.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE join_failures, agent_credentials, join_token_uses, join_tokens")
