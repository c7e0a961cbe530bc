"""Migrations against a real Postgres: 0010 fills the new job columns for jobs stored before it."""

from __future__ import annotations

import asyncio
import json
import secrets

import asyncpg
import pytest
from alembic import command

from services.common.store import alembic_config

pytestmark = pytest.mark.integration

TRAIN_CONFIG = {
    "stage": "sft",
    "finetuning_type": "lora",
    "dataset": "usr_a__alpaca,tiny_sft",
    "output_dir": "/o/job_t",
    "model_name_or_path": "/m/tiny",
    "template": "default",
}
EXPORT_CONFIG = {
    "export_dir": "/o/job_e/export",
    "export_quantization_bit": 4,
    "model_name_or_path": "/m/tiny",
    "adapter_name_or_path": "/o/job_t",
    "template": "default",
}
EVAL_CONFIG = {"eval_dataset": "tiny_sft", "output_dir": "/o/job_v"}


@pytest.fixture
async def old_database(postgres_server):
    """A fresh database migrated to 0009, dropped after the test."""
    name = f"mig_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres_server.url)
    await admin.execute(f"CREATE DATABASE {name}")
    url = postgres_server.url.rsplit("/", 1)[0] + f"/{name}"
    try:
        await asyncio.to_thread(command.upgrade, alembic_config(url), "0009_eval_curves")
        yield url
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def _insert_job(conn, job_id: str, kind: str, request: dict, config: dict, state: str = "succeeded") -> None:
    await conn.execute(
        "INSERT INTO jobs (id, owner_id, kind, state, request, config, config_yaml, output_dir) "
        "VALUES ($1, 'usr_a', $2, $3, $4::jsonb, $5::jsonb, '', $6)",
        job_id,
        kind,
        state,
        json.dumps(request),
        json.dumps(config),
        f"/o/{job_id}",
    )


async def test_0010_fills_inputs_and_outputs_of_jobs_stored_before_it(old_database):
    conn = await asyncpg.connect(old_database)
    try:
        await conn.execute("INSERT INTO users (id, username, password_hash, role) VALUES ('usr_a', 'a', 'x', 'user')")
        await _insert_job(
            conn,
            "job_t",
            "train",
            {"base_model": "tiny", "datasets": ["alpaca", "tiny_sft"], "finetuning_type": "lora"},
            TRAIN_CONFIG,
            state="running",
        )
        await _insert_job(conn, "job_e", "export", {"model": "tiny-sft-1"}, EXPORT_CONFIG)
        await _insert_job(conn, "job_v", "eval", {"model": "tiny", "datasets": ["tiny_sft"]}, EVAL_CONFIG)
        await asyncio.to_thread(command.upgrade, alembic_config(old_database), "head")
        rows = {
            row["id"]: row
            for row in await conn.fetch("SELECT id, dataset_keys, model_name, output::text AS output FROM jobs")
        }
    finally:
        await conn.close()
    train, export, evaluation = rows["job_t"], rows["job_e"], rows["job_v"]
    assert train["dataset_keys"] == ["usr_a__alpaca", "tiny_sft"] and train["model_name"] == "tiny"
    assert json.loads(train["output"]) == {
        "kind": "lora",
        "source": "train",
        "path": "/o/job_t",
        "parent_name": "tiny",
        "parent_location": "/m/tiny",
        "label": "sft",
        "datasets": ["alpaca", "tiny_sft"],
        "template": "default",
        "details": {"stage": "sft", "finetuning_type": "lora", "dataset_keys": ["usr_a__alpaca", "tiny_sft"]},
    }
    assert export["dataset_keys"] == [] and export["model_name"] == "tiny-sft-1"
    out = json.loads(export["output"])
    assert (out["kind"], out["label"], out["path"], out["parent_location"]) == (
        "quantized",
        "q4",
        "/o/job_e/export",
        "/o/job_t",
    )
    assert out["details"] == {"quantization_bit": 4, "quantization_method": "gptq"}
    assert evaluation["dataset_keys"] == ["tiny_sft"] and evaluation["output"] is None
