"""registry: models gain kind, lineage, sources, visibility, size, retirement and soft deletion

Revision ID: 0004_registry
Revises: 0003_datasets
Create Date: 2026-11-27
"""

from alembic import op

revision = "0004_registry"
down_revision = "0003_datasets"
branch_labels = None
depends_on = None

# Names were unique across everyone; now presets share one namespace and each owner has their own,
# so a user's name never tells them what another user called a model.
STATEMENTS = """
ALTER TABLE models DROP CONSTRAINT models_name_key;
ALTER TABLE models DROP CONSTRAINT models_source_check;
UPDATE models SET source = 'train' WHERE source = 'job';
ALTER TABLE models ALTER COLUMN path DROP NOT NULL;
ALTER TABLE models
    ADD COLUMN kind          text NOT NULL DEFAULT 'base',
    ADD COLUMN base_model_id text REFERENCES models(id),
    ADD COLUMN hf_path       text,
    ADD COLUMN ms_path       text,
    ADD COLUMN visibility    text NOT NULL DEFAULT 'public',
    ADD COLUMN size_bytes    bigint,
    ADD COLUMN datasets      text[] NOT NULL DEFAULT '{}',
    ADD COLUMN details       jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN remark        text,
    ADD COLUMN retired_at    timestamptz,
    ADD COLUMN deleted_at    timestamptz,
    ADD COLUMN updated_at    timestamptz NOT NULL DEFAULT now();
UPDATE models SET kind = 'full', visibility = 'private' WHERE source = 'train';
UPDATE models SET job_id = NULL WHERE job_id IS NOT NULL AND job_id NOT IN (SELECT id FROM jobs);
ALTER TABLE models
    ADD CONSTRAINT models_source_check CHECK (source IN ('preset', 'train', 'export')),
    ADD CONSTRAINT models_kind_check CHECK (kind IN ('base', 'lora', 'full', 'quantized')),
    ADD CONSTRAINT models_presets_are_bases CHECK ((source = 'preset') = (kind = 'base')),
    ADD CONSTRAINT models_presets_are_public CHECK ((source = 'preset') = (visibility = 'public')),
    ADD CONSTRAINT models_outputs_have_owners CHECK (source = 'preset' OR owner_id IS NOT NULL),
    ADD CONSTRAINT models_lora_knows_its_base CHECK (kind <> 'lora' OR base_model_id IS NOT NULL),
    ADD CONSTRAINT models_have_a_location CHECK (num_nonnulls(path, hf_path, ms_path) > 0),
    ADD CONSTRAINT models_only_presets_retire CHECK (retired_at IS NULL OR source = 'preset'),
    ADD CONSTRAINT models_job_fk FOREIGN KEY (job_id) REFERENCES jobs(id) ON DELETE SET NULL;
CREATE UNIQUE INDEX models_preset_name ON models (name) WHERE source = 'preset' AND deleted_at IS NULL;
CREATE UNIQUE INDEX models_owner_name ON models (owner_id, name) WHERE source <> 'preset' AND deleted_at IS NULL;
CREATE UNIQUE INDEX models_job ON models (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX models_base ON models (base_model_id);
CREATE INDEX models_owner_created ON models (owner_id, created_at DESC)
"""

# Best effort: what the old table cannot hold (deleted rows, hub-only presets, per-owner names) is lost.
DOWNGRADE = """
DROP INDEX models_preset_name, models_owner_name, models_job, models_base, models_owner_created;
ALTER TABLE models DROP CONSTRAINT models_source_check, DROP CONSTRAINT models_outputs_have_owners;
DELETE FROM models WHERE deleted_at IS NOT NULL OR path IS NULL;
UPDATE models SET source = 'job' WHERE source <> 'preset';
ALTER TABLE models
    DROP COLUMN kind, DROP COLUMN base_model_id, DROP COLUMN hf_path, DROP COLUMN ms_path,
    DROP COLUMN visibility, DROP COLUMN size_bytes, DROP COLUMN datasets, DROP COLUMN details,
    DROP COLUMN remark, DROP COLUMN retired_at, DROP COLUMN deleted_at, DROP COLUMN updated_at,
    DROP CONSTRAINT models_job_fk;
ALTER TABLE models ALTER COLUMN path SET NOT NULL;
ALTER TABLE models ADD CONSTRAINT models_source_check CHECK (source IN ('preset', 'job'));
ALTER TABLE models ADD CONSTRAINT models_name_key UNIQUE (name)
"""


def _run(statements: str) -> None:
    # asyncpg runs one statement per call.
    for statement in statements.split(";"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _run(STATEMENTS)


def downgrade() -> None:
    _run(DOWNGRADE)
