"""datasets: public and private datasets, their files and LLaMA-Factory entries

Revision ID: 0003_datasets
Revises: 0002_jobs
Create Date: 2026-11-27
"""

from alembic import op

revision = "0003_datasets"
down_revision = "0002_jobs"
branch_labels = None
depends_on = None

STATEMENTS = """
CREATE TABLE datasets (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    info_key    text NOT NULL UNIQUE,
    visibility  text NOT NULL CHECK (visibility IN ('public', 'private')),
    owner_id    text REFERENCES users(id) ON DELETE CASCADE,
    source      text NOT NULL CHECK (source IN ('upload', 'file', 'hub', 'public_file')),
    format      text NOT NULL CHECK (format IN ('alpaca', 'sharegpt', 'text', 'pairwise')),
    columns     jsonb NOT NULL DEFAULT '{}',
    tags        jsonb NOT NULL DEFAULT '{}',
    file_name   text,
    files       jsonb NOT NULL DEFAULT '[]',
    managed     boolean NOT NULL DEFAULT false,
    rows        bigint,
    size_bytes  bigint,
    checksum    text,
    signature   text,
    remark      text NOT NULL DEFAULT '',
    info        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (visibility = 'public' OR owner_id IS NOT NULL)
);
CREATE UNIQUE INDEX datasets_public_name ON datasets (name) WHERE visibility = 'public';
CREATE UNIQUE INDEX datasets_private_name ON datasets (owner_id, name) WHERE visibility = 'private';
CREATE INDEX datasets_by_name ON datasets (lower(name), id)
"""


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in STATEMENTS.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE datasets")
