"""Preset base models: the shipped reference list and operators' local models (`register_preset`)."""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg
import msgspec

from services.common.security import new_id

from .schemas import PresetCreate

log = logging.getLogger(__name__)

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
    presets = [
        msgspec.convert({"name": name, **msgspec.to_builtins(entry)}, PresetCreate) for name, entry in entries.items()
    ]
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
        added += (
            await conn.fetchval(
                """
            INSERT INTO models (id, name, source, kind, visibility, hf_path, ms_path, parameter_count, template,
                                remark, details)
            SELECT $1, $2, 'preset', 'base', 'public', $3, $4, $5, $6, $7, '{"reference": true}'
            WHERE NOT EXISTS (SELECT 1 FROM models WHERE source = 'preset' AND name = $2)
            ON CONFLICT DO NOTHING RETURNING 1
            """,
                new_id("mdl"),
                preset.name,
                preset.hf_path,
                preset.ms_path,
                preset.parameter_count,
                preset.template,
                preset.remark,
            )
            or 0
        )
    if added:
        log.info("registered %d reference preset(s) from %s", added, path)
    return added


async def register_preset(
    pool: asyncpg.Pool, *, name: str, path: str, parameter_count: int | None, template: str = "default"
) -> str:
    """Add or update a preset with a local copy at `path`; returns its id (retirement is left as it was)."""
    return await pool.fetchval(
        """
        INSERT INTO models (id, name, source, kind, visibility, path, parameter_count, template)
        VALUES ($1, $2, 'preset', 'base', 'public', $3, $4, $5)
        ON CONFLICT (name) WHERE source = 'preset' AND deleted_at IS NULL
        DO UPDATE SET path = $3, parameter_count = $4, template = $5, updated_at = now()
        RETURNING id
        """,
        new_id("mdl"),
        name,
        path,
        parameter_count,
        template,
    )
