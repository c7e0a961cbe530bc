"""auth: users, invite codes, API keys, revoked sessions, login failures

Revision ID: 0001_auth
Revises:
Create Date: 2026-11-26
"""

from alembic import op

revision = "0001_auth"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in STATEMENTS.split(";"):
        if statement.strip():
            op.execute(statement)


STATEMENTS = """
        CREATE TABLE users (
            id            text PRIMARY KEY,
            username      text NOT NULL UNIQUE,
            password_hash text NOT NULL,
            role          text NOT NULL CHECK (role IN ('admin', 'user')),
            disabled      boolean NOT NULL DEFAULT false,
            created_at    timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE invite_codes (
            code        text PRIMARY KEY,
            created_by  text REFERENCES users(id) ON DELETE SET NULL,
            max_uses    integer NOT NULL CHECK (max_uses > 0),
            uses        integer NOT NULL DEFAULT 0,
            expires_at  timestamptz,
            revoked_at  timestamptz,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE api_keys (
            id           text PRIMARY KEY,
            user_id      text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            name         text NOT NULL,
            prefix       text NOT NULL,
            key_hash     bytea NOT NULL UNIQUE,
            created_at   timestamptz NOT NULL DEFAULT now(),
            last_used_at timestamptz,
            revoked_at   timestamptz
        );
        CREATE INDEX api_keys_user ON api_keys (user_id, created_at);
        CREATE TABLE revoked_sessions (
            session_id text PRIMARY KEY,
            user_id    text NOT NULL,
            expires_at timestamptz NOT NULL,
            revoked_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX revoked_sessions_expiry ON revoked_sessions (expires_at);
        CREATE TABLE login_failures (
            id     bigserial PRIMARY KEY,
            key    text NOT NULL,
            at     timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX login_failures_key_at ON login_failures (key, at);
"""


def downgrade() -> None:
    op.execute("DROP TABLE login_failures, revoked_sessions, api_keys, invite_codes, users")
