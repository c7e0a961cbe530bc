"""Helpers of the registry tests: users, jobs and models arranged in Postgres as their owners would write them."""

from __future__ import annotations

import json
import secrets
import struct
from pathlib import Path

import msgspec

from services.common.security import issue_token, new_id
from services.registry.presets import register_preset
from services.scheduler.rendering import job_inputs


def unique(prefix: str) -> str:
    """A name no other test uses (the database lives for the whole session)."""
    return f"{prefix}-{secrets.token_hex(4)}"


async def make_user(pool, settings, role: str = "user") -> tuple[str, dict]:
    """A user as auth would store it, with a signed token: (user id, auth headers)."""
    user_id, username = new_id("usr"), unique("reg")
    await pool.execute(
        "INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, 'x', $3)", user_id, username, role
    )
    token, _, _ = issue_token(settings.secret_key, user_id=user_id, username=username, role=role, ttl_s=3600)
    return user_id, {"Authorization": f"Bearer {token}"}


async def make_preset(pool, name: str | None = None, path: str | None = None) -> tuple[str, str]:
    """A preset with a local copy: (id, name)."""
    name = name or unique("preset")
    model_id = await register_preset(pool, name=name, path=path or f"/models/{name}", parameter_count=1_000_000)
    return model_id, name


async def make_output(
    pool,
    owner_id: str,
    base_id: str,
    *,
    kind: str = "full",
    source: str = "train",
    name: str | None = None,
    job_id: str | None = None,
    datasets=("tiny_sft",),
) -> tuple[str, str]:
    """A model a job produced, as the registry would have registered it: (id, name)."""
    model_id, name = new_id("mdl"), name or unique(kind)
    await pool.execute(
        "INSERT INTO models (id, name, kind, source, visibility, owner_id, base_model_id, path, job_id, datasets, "
        "parameter_count) VALUES ($1, $2, $3, $4, 'private', $5, $6, $7, $8, $9, 1000000)",
        model_id,
        name,
        kind,
        source,
        owner_id,
        base_id,
        f"/out/{model_id}",
        job_id,
        list(datasets),
    )
    return model_id, name


async def make_job(
    pool,
    owner_id: str,
    *,
    kind: str = "train",
    state: str = "succeeded",
    request: dict,
    config: dict,
    job_id: str | None = None,
) -> str:
    """A job as the scheduler would have stored it, with what it reads and leaves in their own columns."""
    job_id = job_id or new_id("job")
    inputs = job_inputs(kind, request, config)
    await pool.execute(
        "INSERT INTO jobs (id, owner_id, kind, state, request, config, config_yaml, dataset_keys, model_name, output) "
        "VALUES ($1, $2, $3, $4, $5, $6, '', $7, $8, $9)",
        job_id,
        owner_id,
        kind,
        state,
        request,
        config,
        inputs.dataset_keys,
        inputs.model_name,
        msgspec.to_builtins(inputs.output) if inputs.output else None,
    )
    return job_id


def write_adapter(folder: Path, parameters: int = 64) -> None:
    """A LoRA adapter's files: a safetensors header is all the registry reads."""
    folder.mkdir(parents=True, exist_ok=True)
    header = json.dumps({"lora_A.weight": {"dtype": "F32", "shape": [parameters], "data_offsets": [0, 4 * parameters]}})
    (folder / "adapter_model.safetensors").write_bytes(
        struct.pack("<Q", len(header)) + header.encode() + b"\0" * (4 * parameters)
    )
    (folder / "adapter_config.json").write_text("{}")
