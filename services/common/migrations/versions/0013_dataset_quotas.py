"""per-user dataset quotas an admin set (the default is LLMCT_DATASET_QUOTA_BYTES); the datasets service owns them

Revision ID: 0013_dataset_quotas
Revises: 0012_fair_use
Create Date: 2026-12-03
"""

from alembic import op

revision = "0013_dataset_quotas"
down_revision = "0012_fair_use"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE dataset_quotas (
            user_id     text PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
            max_bytes   bigint CHECK (max_bytes >= 0),
            updated_at  timestamptz NOT NULL DEFAULT now(),
            updated_by  text
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE dataset_quotas")
