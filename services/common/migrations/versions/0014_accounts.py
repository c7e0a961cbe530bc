"""accounts: a user's session generation (admins end every session at once), API keys' expiry and scope

Revision ID: 0014_accounts
Revises: 0013_dataset_quotas
Create Date: 2026-12-03
"""

from alembic import op

revision = "0014_accounts"
down_revision = "0013_dataset_quotas"
branch_labels = None
depends_on = None

STATEMENTS = """
ALTER TABLE users ADD COLUMN session_generation integer NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
ALTER TABLE api_keys ADD COLUMN scope text NOT NULL DEFAULT 'full' CHECK (scope IN ('full', 'read_only', 'inference'))
"""


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in STATEMENTS.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE api_keys DROP COLUMN scope, DROP COLUMN expires_at")
    op.execute("ALTER TABLE users DROP COLUMN session_generation")
