"""dataset_info.json, written from the database, and the public list synced into it.

Both functions take a plain asyncpg connection so that the service and operator tooling (`llmct up`,
`llmct models make-tiny`, the tests) share them. Writers of dataset_info.json hold a Postgres advisory
lock and read the table after taking it, so whichever writes last writes the newest state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from services.common import readmodels
from services.common.security import new_id

from . import formats, readers, scan, store
from .layout import DataLayout, UnsafePath, data_files, write_json_atomically

log = logging.getLogger(__name__)

HUB_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url")
PUBLIC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


async def write_dataset_info(conn: asyncpg.Connection, layout: DataLayout) -> int:
    """Rewrite dataset_info.json from the table (atomically); returns how many entries it has."""
    async with conn.transaction():
        await store.lock_info(conn)
        rows = await store.info_entries(conn)
        payload = {row["info_key"]: json.loads(row["info"]) for row in rows}
        layout.root.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(write_json_atomically, layout.info_path, payload)
    return len(payload)


def mark_public(data_dir: Path, entries: dict[str, dict]) -> None:
    """Add or replace entries of dataset_info_public.json (operator tooling: the tiny datasets)."""
    layout = DataLayout(Path(data_dir))
    layout.root.mkdir(parents=True, exist_ok=True)
    current = _read_public(layout) or {}
    current.update(entries)
    write_json_atomically(layout.public_info_path, current)


def _read_public(layout: DataLayout) -> dict[str, Any] | None:
    """The public list; {} when there is none, None when it cannot be read (then nothing is removed)."""
    try:
        payload = json.loads(layout.public_info_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.error("%s is not readable JSON, public datasets left as they are: %s", layout.public_info_path, exc)
        return None
    if not isinstance(payload, dict):
        log.error("%s must be an object of name -> entry; public datasets left as they are", layout.public_info_path)
        return None
    return payload


@dataclass
class SyncReport:
    synced: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)


@dataclass
class PublicEntry:
    name: str
    fmt: str
    columns: dict[str, str]
    tags: dict[str, str]
    file_name: str | None
    files: list[dict]
    rows: int | None
    size_bytes: int | None
    checksum: str | None
    signature: str | None
    info: dict[str, Any]
    measured: bool = True
    """False when the files are as measured last time: rows, sizes and checksums are kept."""


def signature_of(paths: list[Path]) -> str:
    """Names, sizes and modification times: when it is unchanged, so are the files."""
    parts = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths]
    return "|".join(parts)


def _prepare(layout: DataLayout, name: str, entry: Any, known: asyncpg.Record | None) -> PublicEntry:
    """Check one public entry and measure its files (blocking); ValueError says why it is skipped."""
    if not PUBLIC_NAME.match(name):
        raise ValueError("the name must be 1-128 letters, digits, '.', '_' or '-'")
    if not isinstance(entry, dict):
        raise ValueError("the entry must be an object")
    if "script_url" in entry or "cloud_file_name" in entry:
        raise ValueError("script and cloud datasets are not supported (they would run or fetch arbitrary code)")
    fmt = formats.format_of_entry(entry)
    columns = formats.columns_of_entry(fmt, entry)
    tags = {**formats.SHAREGPT_TAGS, **entry.get("tags", {})} if fmt == "sharegpt" else {}
    if any(key in entry for key in HUB_KEYS):
        return PublicEntry(name, fmt, columns, tags, None, [], None, None, None, None, entry)
    file_name = entry.get("file_name")
    if not isinstance(file_name, str) or not file_name:
        raise ValueError("the entry has no file_name (nor a hub URL)")
    try:
        path = layout.stored_path(file_name)
    except UnsafePath as exc:
        raise ValueError(str(exc)) from exc
    if not path.exists():
        raise ValueError(f"{file_name} does not exist in the data folder")
    paths = data_files(path)
    signature = signature_of(paths)
    size = sum(p.stat().st_size for p in paths)
    if known is not None and known["signature"] == signature and known["source"] == "public_file":
        return PublicEntry(name, fmt, columns, tags, file_name, [], None, size, None, signature, entry, measured=False)
    return _measured(name, fmt, columns, tags, file_name, paths, size, signature, entry)


def _measured(name, fmt, columns, tags, file_name, paths, size, signature, entry) -> PublicEntry:
    rows = None
    try:
        result = scan.scan(paths, fmt, columns, tags)
        rows = result.rows
        if result.bad_rows:
            log.warning(
                "public dataset %s: %d rows the engine would drop, e.g. %s",
                name,
                result.bad_rows,
                "; ".join(result.first_bad),
            )
    except readers.DatasetProblem as exc:
        log.warning("public dataset %s is listed but not readable here (%s); kept as the operator wrote it", name, exc)
    files = [{"name": p.name, "size_bytes": p.stat().st_size, "sha256": readers.sha256_of(p)} for p in paths]
    checksum = files[0]["sha256"] if len(files) == 1 else manifest_digest(files)
    return PublicEntry(name, fmt, columns, tags, file_name, files, rows, size, checksum, signature, entry)


def manifest_digest(files: list[dict]) -> str:
    """The checksum of a dataset made of several files: sha256 of `name sha256` lines in order."""
    import hashlib

    lines = "".join(f"{f['name']} {f['sha256']}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()


async def sync_public_datasets(conn: asyncpg.Connection, data_dir: Path) -> SyncReport:
    """Make the public datasets listed in dataset_info_public.json public datasets of the platform."""
    layout = DataLayout(Path(data_dir))
    report = SyncReport()
    listed = _read_public(layout)
    if listed is None:
        await write_dataset_info(conn, layout)
        return report
    known = {row["name"]: row for row in await store.public_file_rows(conn)}
    prepared: list[PublicEntry] = []
    for name, entry in listed.items():
        try:
            if name in known and known[name]["source"] != "public_file":
                raise ValueError("a public dataset of that name was uploaded or registered on the platform")
            prepared.append(await asyncio.to_thread(_prepare, layout, name, entry, known.get(name)))
        except (ValueError, OSError) as exc:
            report.skipped[name] = str(exc)
            log.warning("public dataset %s skipped: %s", name, exc)
    async with conn.transaction():
        await store.lock_info(conn)
        for item in prepared:
            await _upsert(conn, item, known.get(item.name), report)
        await _remove_unlisted(conn, known, listed, report)
    await write_dataset_info(conn, layout)
    if report.synced or report.removed:
        log.info(
            "public datasets: %d synced, %d removed, %d skipped",
            len(report.synced),
            len(report.removed),
            len(report.skipped),
        )
    return report


async def _upsert(conn, item: PublicEntry, known, report: SyncReport) -> None:
    try:
        async with conn.transaction():
            if not item.measured:
                # Files as measured last time: refresh only what the operator may have edited in the entry.
                await conn.execute(
                    "UPDATE datasets SET format = $2, columns = $3::text::jsonb, tags = $4::text::jsonb, "
                    "info = $5::text::jsonb, updated_at = now() WHERE id = $1 AND info::text <> $5::text::jsonb::text",
                    known["id"],
                    item.fmt,
                    json.dumps(item.columns),
                    json.dumps(item.tags),
                    json.dumps(item.info),
                )
            else:
                await store.upsert_public_file(
                    conn,
                    dataset_id=new_id("ds"),
                    name=item.name,
                    fmt=item.fmt,
                    columns=json.dumps(item.columns),
                    tags=json.dumps(item.tags),
                    file_name=item.file_name,
                    files=json.dumps(item.files),
                    rows=item.rows,
                    size_bytes=item.size_bytes,
                    checksum=item.checksum,
                    signature=item.signature,
                    info=json.dumps(item.info),
                )
        report.synced.append(item.name)
    except asyncpg.UniqueViolationError:
        report.skipped[item.name] = "its name is already a private dataset's key"
        log.warning("public dataset %s skipped: its name is already a private dataset's key", item.name)


async def _remove_unlisted(conn, known: dict, listed: dict, report: SyncReport) -> None:
    for name, row in known.items():
        if row["source"] != "public_file" or name in listed:
            continue
        jobs = await readmodels.active_jobs_using_dataset(conn, row["info_key"])
        if jobs:
            log.warning("public dataset %s is no longer listed but jobs %s use it: kept for now", name, jobs)
            continue
        await store.delete_dataset(conn, row["id"])
        report.removed.append(name)
