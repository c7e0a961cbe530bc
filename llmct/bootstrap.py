"""The tiny Llama and datasets, built locally and registered, so a fresh stack can train at once (`llmct up`,
`llmct models make-tiny`, the tests and the benches).

It writes the registry's preset row and the datasets service's public list directly, before or beside
those services: the composition root is the one place allowed to use both.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import asyncpg

from services.common.settings import REPO_ROOT, StoragePaths
from services.datasets import formats
from services.datasets.catalog import mark_public, sync_public_datasets
from services.registry.outputs import count_parameters
from services.registry.presets import register_preset

from .tiny.data import BENCHMARK_NAME, PT_NAME, SFT_NAME, write_tiny_benchmark, write_tiny_datasets

ENGINE_PYTHON = REPO_ROOT / ".venv-engine" / "bin" / "python"
TINY_MODEL = "tiny-llama"


def mark_tiny_public(data_dir: Path) -> None:
    """List the tiny datasets (written by `llmct.tiny.data`) as public in `dataset_info_public.json`."""
    sft_columns = formats.spec("alpaca").columns({})
    mark_public(
        data_dir,
        {
            SFT_NAME: formats.info_entry("alpaca", f"{SFT_NAME}.json", sft_columns, None),
            PT_NAME: formats.info_entry("text", f"{PT_NAME}.json", formats.spec("text").columns({}), None),
        },
    )


def make_tiny_model(storage: StoragePaths, name: str, engine_python: Path = ENGINE_PYTHON) -> Path:
    """Build the tiny Llama with the engine's interpreter, and the tiny datasets beside the data."""
    if not engine_python.exists():
        raise RuntimeError(f"{engine_python} not found: run engine/install.sh (make engine) first")
    out = storage.models / name
    subprocess.run(
        [str(engine_python), "-m", "llmct.tiny.make_model", "--out", str(out)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    write_tiny_datasets(storage.data)
    mark_tiny_public(storage.data)  # public datasets: synced into the datasets table (below, or at its start-up)
    return out


def ensure_tiny_preset(storage: StoragePaths, database_url: str, name: str = TINY_MODEL, rebuild: bool = False) -> Path:
    """Build the tiny model (unless it is there) and register it as a preset."""
    path = storage.models / name
    if rebuild or not (path / "config.json").exists():
        path = make_tiny_model(storage, name)
    if rebuild or not (storage.evaluation / BENCHMARK_NAME / "mapping.json").exists():
        write_tiny_benchmark(storage.evaluation)  # a benchmark task to try evaluation with

    async def register() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await register_preset(conn, name=name, path=str(path), parameter_count=count_parameters(path))
            await sync_public_datasets(conn, storage.data)  # a running stack sees the tiny datasets at once
        finally:
            await conn.close()

    asyncio.run(register())
    return path
