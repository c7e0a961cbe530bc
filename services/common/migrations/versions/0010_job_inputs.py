"""a job's inputs and output in columns of the scheduler's own, so other services read those instead of
parsing its frozen config: the dataset_info keys it reads, the model it names and the model it leaves

Revision ID: 0010_job_inputs
Revises: 0009_eval_curves
Create Date: 2026-12-03
"""

import json
from pathlib import PurePosixPath

import sqlalchemy as sa
from alembic import op

revision = "0010_job_inputs"
down_revision = "0009_eval_curves"
branch_labels = None
depends_on = None

STATEMENTS = """
ALTER TABLE jobs ADD COLUMN dataset_keys text[] NOT NULL DEFAULT '{}';
ALTER TABLE jobs ADD COLUMN model_name text;
ALTER TABLE jobs ADD COLUMN output jsonb;
UPDATE jobs SET
    model_name = coalesce(request->>'base_model', request->>'model'),
    dataset_keys = array_remove(string_to_array(
        coalesce(config->>'dataset', '') || ',' || coalesce(config->>'eval_dataset', ''), ','), '');
CREATE INDEX jobs_active_datasets ON jobs USING gin (dataset_keys) WHERE state IN ('pending', 'dispatched', 'running')
"""


# What the registry read from the config until this revision, frozen here for the jobs stored before it.
def _train_output(request: dict, config: dict) -> dict:
    keys = [key for key in str(config.get("dataset") or "").split(",") if key]
    details = {
        "stage": config.get("stage"),
        "finetuning_type": request.get("finetuning_type"),
        "quantization_bit": config.get("quantization_bit"),
        "dataset_keys": keys or None,
    }
    return {
        "kind": "lora" if config.get("finetuning_type") == "lora" else "full",
        "source": "train",
        "path": config["output_dir"],
        "parent_name": request.get("base_model"),
        "parent_location": config.get("model_name_or_path"),
        "label": str(config.get("stage") or "train"),
        "datasets": list(request.get("datasets") or ()),
        "template": config.get("template"),
        "details": {k: v for k, v in details.items() if v is not None},
    }


def _export_path(config: dict, output_dir: str | None) -> str:
    """Where an export wrote: its export_dir, else export/ under its output directory."""
    if config.get("export_dir"):
        return config["export_dir"]
    base = config.get("output_dir") or output_dir
    if base is None:  # the scheduler gives every export job one or the other
        raise RuntimeError("an export job has neither export_dir nor output_dir")
    return str(PurePosixPath(base) / "export")


def _export_output(request: dict, config: dict, output_dir: str | None) -> dict:
    gptq_bits = config.get("export_quantization_bit")
    bits = gptq_bits or config.get("quantization_bit")
    path = _export_path(config, output_dir)
    method = "gptq" if gptq_bits else config.get("quantization_method", "bitsandbytes") if bits else None
    details = {"quantization_bit": bits, "quantization_method": method}
    return {
        "kind": "quantized" if bits else "full",
        "source": "export",
        "path": path,
        "parent_name": request.get("model") or request.get("base_model"),
        "parent_location": config.get("adapter_name_or_path") or config.get("model_name_or_path"),
        "label": f"q{bits}" if bits else "export",
        "template": config.get("template"),
        "details": {k: v for k, v in details.items() if v is not None},
    }


def _backfill_outputs() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT id, kind, request::text, config::text, output_dir FROM jobs WHERE kind IN ('train', 'export')")
    ).fetchall()
    for job_id, kind, request, config, output_dir in rows:
        request, config = json.loads(request), json.loads(config)
        if kind == "train" and "output_dir" not in config:
            continue
        output = _train_output(request, config) if kind == "train" else _export_output(request, config, output_dir)
        bind.execute(
            sa.text("UPDATE jobs SET output = CAST(:output AS jsonb) WHERE id = :id"),
            {"output": json.dumps(output), "id": job_id},
        )


def upgrade() -> None:
    # asyncpg runs one statement per call.
    for statement in STATEMENTS.split(";"):
        if statement.strip():
            op.execute(statement)
    _backfill_outputs()


def downgrade() -> None:
    op.execute("DROP INDEX jobs_active_datasets")
    op.execute("ALTER TABLE jobs DROP COLUMN output")
    op.execute("ALTER TABLE jobs DROP COLUMN model_name")
    op.execute("ALTER TABLE jobs DROP COLUMN dataset_keys")
