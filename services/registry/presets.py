"""Preset base models: the shipped reference list, operators' local models (`llmct models make-tiny`)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from pathlib import Path

import asyncpg
import msgspec

from services.common.security import new_id
from services.common.settings import REPO_ROOT, StoragePaths

from .outputs import count_parameters  # noqa: F401 - re-exported: `llmct` and the benches import it from here
from .schemas import PresetCreate

log = logging.getLogger(__name__)

ENGINE_PYTHON = REPO_ROOT / ".venv-engine" / "bin" / "python"
# The seed's reference/extracted_model_paths.json: preset names mapped to hub paths and sizes.
REFERENCE_FILE = Path(__file__).with_name("reference") / "presets.json"


class ReferencePreset(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One entry of the reference file (its key is the name)."""

    hf_path: str | None = None
    ms_path: str | None = None
    parameter_count: int | None = None
    template: str = "default"
    remark: str | None = None


def load_reference(path: Path = REFERENCE_FILE) -> list[PresetCreate]:
    """The reference presets, validated like an admin's POST /api/models (a bad file fails start-up)."""
    entries = msgspec.json.decode(path.read_bytes(), type=dict[str, ReferencePreset])
    presets = [msgspec.convert({"name": name, **msgspec.to_builtins(entry)}, PresetCreate)
               for name, entry in entries.items()]
    for preset in presets:
        if not (preset.hf_path or preset.ms_path):
            raise ValueError(f"{path}: preset {preset.name!r} has neither hf_path nor ms_path")
    return presets


async def sync_reference_presets(conn, path: Path = REFERENCE_FILE) -> int:
    """Add the reference presets not registered yet; returns how many were added.

    Existing presets are left alone, so an admin's edits and retirements stand; one an admin deleted
    stays deleted (its tombstone counts as registered).
    """
    added = 0
    for preset in load_reference(path):
        added += await conn.fetchval(
            """
            INSERT INTO models (id, name, source, kind, visibility, hf_path, ms_path, parameter_count, template,
                                remark, details)
            SELECT $1, $2, 'preset', 'base', 'public', $3, $4, $5, $6, $7, '{"reference": true}'
            WHERE NOT EXISTS (SELECT 1 FROM models WHERE source = 'preset' AND name = $2)
            ON CONFLICT DO NOTHING RETURNING 1
            """,
            new_id("mdl"), preset.name, preset.hf_path, preset.ms_path, preset.parameter_count, preset.template,
            preset.remark,
        ) or 0
    if added:
        log.info("registered %d reference preset(s) from %s", added, path)
    return added


async def register_preset(pool: asyncpg.Pool, *, name: str, path: str, parameter_count: int | None,
                          template: str = "default") -> str:
    """Add or update a preset with a local copy at `path`; returns its id (retirement is left as it was)."""
    return await pool.fetchval(
        """
        INSERT INTO models (id, name, source, kind, visibility, path, parameter_count, template)
        VALUES ($1, $2, 'preset', 'base', 'public', $3, $4, $5)
        ON CONFLICT (name) WHERE source = 'preset' AND deleted_at IS NULL
        DO UPDATE SET path = $3, parameter_count = $4, template = $5, updated_at = now()
        RETURNING id
        """,
        new_id("mdl"), name, path, parameter_count, template,
    )


def make_tiny_model(storage: StoragePaths, name: str, engine_python: Path = ENGINE_PYTHON) -> Path:
    """Build the tiny Llama with the engine's interpreter, and the tiny datasets beside the data."""
    from services.agent.engine_tools.tiny_data import write_tiny_datasets
    from services.datasets.catalog import mark_tiny_public

    if not engine_python.exists():
        raise RuntimeError(f"{engine_python} not found: run engine/install.sh (make engine) first")
    out = storage.models / name
    subprocess.run([str(engine_python), "-m", "services.agent.engine_tools.make_tiny", "--out", str(out)],
                   cwd=REPO_ROOT, check=True, capture_output=True, text=True)
    write_tiny_datasets(storage.data)
    mark_tiny_public(storage.data)  # public datasets: synced into the datasets table (below, or at its start-up)
    return out


def ensure_tiny_preset(storage: StoragePaths, database_url: str, name: str, rebuild: bool = False) -> Path:
    """Build the tiny model (unless it is there) and register it as a preset."""
    from services.agent.engine_tools.tiny_data import BENCHMARK_NAME, write_tiny_benchmark

    path = storage.models / name
    if rebuild or not (path / "config.json").exists():
        path = make_tiny_model(storage, name)
    if rebuild or not (storage.evaluation / BENCHMARK_NAME / "mapping.json").exists():
        write_tiny_benchmark(storage.evaluation)  # a benchmark task to try evaluation with

    from services.datasets.catalog import sync_public_datasets

    async def register() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await register_preset(conn, name=name, path=str(path), parameter_count=count_parameters(path))
            await sync_public_datasets(conn, storage.data)  # a running stack sees the tiny datasets at once
        finally:
            await conn.close()

    asyncio.run(register())
    return path
