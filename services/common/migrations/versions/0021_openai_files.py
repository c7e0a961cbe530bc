"""OpenAI files and uploads: a file is a private dataset of its owner (named by the file id) plus what OpenAI's file
object says (filename, purpose, bytes as uploaded); an upload gathers parts on disk until it completes into a file

Revision ID: 0021_openai_files
Revises: 0020_webhooks
Create Date: 2026-12-04
"""

from alembic import op

revision = "0021_openai_files"
down_revision = "0020_webhooks"
branch_labels = None
depends_on = None

STATEMENTS = """
CREATE TABLE openai_files (
    id          text PRIMARY KEY,
    dataset_id  text NOT NULL UNIQUE REFERENCES datasets(id) ON DELETE CASCADE,
    owner_id    text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    filename    text NOT NULL,
    purpose     text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('chat', 'preference')),
    bytes       bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX openai_files_by_owner ON openai_files (owner_id, created_at, id);
CREATE TABLE openai_uploads (
    id          text PRIMARY KEY,
    owner_id    text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    filename    text NOT NULL,
    purpose     text NOT NULL,
    bytes       bigint NOT NULL,
    mime_type   text NOT NULL,
    status      text NOT NULL CHECK (status IN ('pending', 'completed', 'cancelled', 'expired')),
    folder      text NOT NULL,
    file_id     text REFERENCES openai_files(id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX openai_uploads_pending ON openai_uploads (expires_at) WHERE status = 'pending';
CREATE TABLE openai_upload_parts (
    id          text PRIMARY KEY,
    upload_id   text NOT NULL REFERENCES openai_uploads(id) ON DELETE CASCADE,
    bytes       bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX openai_upload_parts_of ON openai_upload_parts (upload_id)
"""


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in STATEMENTS.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    for table in ("openai_upload_parts", "openai_uploads", "openai_files"):
        op.execute(f"DROP TABLE {table}")
