"""jobs run as engine stages (eval and export kinds; a LoRA export with quantisation has two), and keep
their output folder in a column of its own (an export's YAML has no output_dir)

Revision ID: 0005_job_stages
Revises: 0004_registry
Create Date: 2026-11-26
"""

from alembic import op

revision = "0005_job_stages"
down_revision = "0004_registry"
branch_labels = None
depends_on = None

STATEMENTS = """
ALTER TABLE jobs ADD COLUMN stages jsonb NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN output_dir text;
UPDATE jobs SET output_dir = config->>'output_dir',
    stages = jsonb_build_array(jsonb_build_object(
        'name', kind, 'command', '["llamafactory-cli", "train"]'::jsonb, 'config_yaml', config_yaml))
    WHERE stages = '[]' AND kind = 'train';
CREATE INDEX jobs_kind_owner ON jobs (owner_id, kind, created_at DESC)
"""


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in STATEMENTS.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX jobs_kind_owner")
    op.execute("ALTER TABLE jobs DROP COLUMN output_dir")
    op.execute("ALTER TABLE jobs DROP COLUMN stages")
