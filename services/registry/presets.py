"""Preset base models: registered by operators (and `llmct models make-tiny`), usable by everyone."""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
from pathlib import Path

import asyncpg

from services.common.security import new_id
from services.common.settings import REPO_ROOT, StoragePaths

ENGINE_PYTHON = REPO_ROOT / ".venv-engine" / "bin" / "python"


def count_parameters(model_dir: Path) -> int | None:
    """Parameters of a safetensors model, read from the file headers only (no torch needed)."""
    total = 0
    files = sorted(model_dir.glob("*.safetensors"))
    for path in files:
        with open(path, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(size))
        for name, tensor in header.items():
            if name != "__metadata__":
                count = 1
                for dim in tensor["shape"]:
                    count *= dim
                total += count
    return total if files else None


async def register_preset(pool: asyncpg.Pool, *, name: str, path: str, parameter_count: int | None,
                          template: str = "default") -> str:
    """Add or update a preset; returns its id."""
    return await pool.fetchval(
        """
        INSERT INTO models (id, name, source, path, parameter_count, template) VALUES ($1, $2, 'preset', $3, $4, $5)
        ON CONFLICT (name) DO UPDATE SET path = $3, parameter_count = $4, template = $5
        RETURNING id
        """,
        new_id("mdl"), name, path, parameter_count, template,
    )


def make_tiny_model(storage: StoragePaths, name: str, engine_python: Path = ENGINE_PYTHON) -> Path:
    """Build the tiny Llama with the engine's interpreter, and the tiny datasets beside the data."""
    from services.agent.engine_tools.tiny_data import write_tiny_datasets

    if not engine_python.exists():
        raise RuntimeError(f"{engine_python} not found: run engine/install.sh (make engine) first")
    out = storage.models / name
    subprocess.run([str(engine_python), "-m", "services.agent.engine_tools.make_tiny", "--out", str(out)],
                   cwd=REPO_ROOT, check=True, capture_output=True, text=True)
    write_tiny_datasets(storage.data)
    return out


def ensure_tiny_preset(storage: StoragePaths, database_url: str, name: str, rebuild: bool = False) -> Path:
    """Build the tiny model (unless it is there) and register it as a preset."""
    path = storage.models / name
    if rebuild or not (path / "config.json").exists():
        path = make_tiny_model(storage, name)

    async def register() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await register_preset(conn, name=name, path=str(path), parameter_count=count_parameters(path))
        finally:
            await conn.close()

    asyncio.run(register())
    return path
