"""Logic of the datasets service: who sees and changes what, previews, and keeping dataset_info.json current."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import asyncpg
import msgspec

from services.common import objects, readmodels
from services.common.contracts import Buckets
from services.common.errors import ApiError, not_found
from services.common.inputs import InputStore
from services.common.security import Principal

from . import formats, readers, store
from .catalog import write_dataset_info
from .checks import CheckPool
from .layout import DataLayout, UnsafePath, data_files, remove_stored
from .rows import RowChecker, RowProblem
from .schemas import Dataset, DatasetPage, DatasetPatch, Preview, PreviewRow, StoredFile
from .settings import DatasetSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    """What every operation needs: the pool, the data folder and the service's settings."""

    pool: asyncpg.Pool
    layout: DataLayout
    settings: DatasetSettings
    checks: CheckPool = field(default_factory=CheckPool)
    """Worker processes that check a large upload's rows while it streams in."""
    inputs: InputStore | None = None
    """`objects` storage mode: the store jobs' inputs go into (an upload's plain files stream into it)."""


def info_key(name: str, visibility: str, owner_id: str | None) -> str:
    """The dataset's name in dataset_info.json: unique across owners, since the engine looks names up there."""
    return name if visibility == "public" else f"{owner_id}__{name}"


def may_edit(row, caller: Principal | None) -> bool:
    """Admins manage public datasets; a private one is its owner's alone."""
    if caller is None:
        return False
    return caller.is_admin if row["visibility"] == "public" else row["owner_id"] == caller.user_id


def to_dataset(row, caller: Principal | None) -> Dataset:
    return Dataset(
        id=row["id"],
        name=row["name"],
        key=row["info_key"],
        visibility=row["visibility"],
        format=row["format"],
        source=row["source"],
        owner_id=row["owner_id"],
        owner=row["owner"],
        can_edit=may_edit(row, caller),
        columns=row["columns"],
        tags=row["tags"],
        file_name=row["file_name"],
        files=[msgspec.convert(f, StoredFile) for f in row["files"]],
        rows=row["rows"],
        size_bytes=row["size_bytes"],
        checksum=row["checksum"],
        remark=row["remark"],
        dataset_info=row["info"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _caller_id(caller: Principal | None) -> str | None:
    return caller.user_id if caller else None


async def refresh_info(ctx: Context) -> None:
    """Rewrite dataset_info.json after a committed change; a failure is logged, the change stands."""
    try:
        async with ctx.pool.acquire() as conn:
            # The pool's proxy forwards every Connection method; asyncpg's types do not say so.
            await write_dataset_info(cast(asyncpg.Connection, conn), ctx.layout)
    except OSError as exc:
        log.error("dataset_info.json could not be written (the next change retries): %s", exc)


# --- reading -----------------------------------------------------------------------------------------------


def encode_cursor(row) -> str:
    return base64.urlsafe_b64encode(json.dumps([row["name"].lower(), row["id"]]).encode()).decode()


def decode_cursor(cursor: str | None) -> tuple[str, str] | None:
    if not cursor:
        return None
    try:
        name, dataset_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(name), str(dataset_id)
    except (ValueError, TypeError) as exc:
        raise ApiError(422, "invalid_field", "cursor is not one this API returned", "cursor") from exc


async def list_datasets(
    pool,
    caller: Principal | None,
    *,
    search: str | None,
    fmt: str | None,
    visibility: str | None,
    cursor: str | None,
    limit: int,
) -> DatasetPage:
    filters = {"caller_id": _caller_id(caller), "search": search, "fmt": fmt, "visibility": visibility}
    async with pool.acquire() as conn:
        rows = await store.list_visible(conn, **filters, after=decode_cursor(cursor), limit=limit + 1)
        total = await store.count_visible(conn, **filters)
    items = [to_dataset(row, caller) for row in rows[:limit]]
    return DatasetPage(
        items=items, total=total, next_cursor=encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    )


async def visible_row(conn, caller: Principal | None, dataset_id: str, *, lock: bool = False):
    row = await store.visible_dataset(conn, dataset_id, _caller_id(caller), lock=lock)
    if row is None:
        raise not_found("dataset")
    return row


async def get_dataset(pool, caller: Principal | None, dataset_id: str) -> Dataset:
    async with pool.acquire() as conn:
        return to_dataset(await visible_row(conn, caller, dataset_id), caller)


def local_paths(ctx: Context, row) -> list[Path]:
    """The dataset's files on disk; 409 for hub datasets and files gone missing."""
    if not row["file_name"]:
        raise ApiError(409, "no_local_file", "this dataset lives on a hub: it has no file here to read")
    try:
        path = ctx.layout.stored_path(row["file_name"])
    except UnsafePath as exc:
        raise ApiError(409, "dataset_unreadable", str(exc)) from exc
    if not path.exists():
        raise ApiError(
            409,
            "dataset_unreadable",
            f"the dataset's file {row['file_name']} is missing from the data folder: tell an admin",
        )
    return data_files(path)


def _preview_row(checker: RowChecker, where: str, row) -> PreviewRow:
    if isinstance(row, readers.BadRow):
        return PreviewRow(where=where, raw=None, rendered=None, problem=row.problem)
    try:
        checker.convert(row, strict=False)
    except RowProblem as exc:
        return PreviewRow(where=where, raw=formats.render_raw(row), rendered=None, problem=str(exc))
    return PreviewRow(
        where=where,
        raw=formats.render_raw(row),
        rendered=formats.render(checker.fmt, row, checker.columns, checker.tags),
    )


async def preview(ctx: Context, caller: Principal | None, dataset_id: str, limit: int | None) -> Preview:
    """The first rows, raw and as the chat template will see them."""
    async with ctx.pool.acquire() as conn:
        row = await visible_row(conn, caller, dataset_id)
    paths = local_paths(ctx, row)
    try:
        first = await asyncio.to_thread(readers.first_rows, paths, limit or ctx.settings.preview_rows)
    except readers.DatasetProblem as exc:
        raise ApiError(409, "dataset_unreadable", f"the dataset's file cannot be read: {exc}") from exc
    checker = RowChecker(row["format"], row["columns"], row["tags"])
    rows = [_preview_row(checker, where, item) for where, item in first]
    return Preview(id=row["id"], format=row["format"], columns=row["columns"], rows=rows)


# --- changing ----------------------------------------------------------------------------------------------


def _check_editable(row, caller: Principal) -> None:
    if not may_edit(row, caller):
        raise ApiError(403, "forbidden", "public datasets are managed by admins")


def _in_use(jobs: list[str], doing: str) -> ApiError:
    return ApiError(
        409,
        "dataset_in_use",
        f"cannot {doing}: pending or running jobs use this dataset: "
        + ", ".join(jobs)
        + ". Wait for them to finish or cancel them first.",
    )


def _from_file(row, doing: str) -> ApiError:
    return ApiError(
        409,
        "managed_by_file",
        f"cannot {doing}: this public dataset is listed in "
        "dataset_info_public.json; edit that file (the datasets service syncs it at start-up)",
    )


async def patch_dataset(ctx: Context, caller: Principal, dataset_id: str, data: DatasetPatch) -> Dataset:
    """Change the remark or the name of a dataset the caller may edit."""
    renamed = False
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await visible_row(conn, caller, dataset_id, lock=True)
        _check_editable(row, caller)
        changes: dict = {}
        if data.remark is not None:
            changes["remark"] = data.remark
        if data.name is not None and data.name != row["name"]:
            changes |= await _rename(conn, row, data.name)
            renamed = True
        if changes:
            try:
                await store.update_dataset(conn, dataset_id, **changes)
            except asyncpg.UniqueViolationError as exc:
                raise name_taken(data.name or row["name"]) from exc
        row = await visible_row(conn, caller, dataset_id)
    if renamed:
        await refresh_info(ctx)
    return to_dataset(row, caller)


def name_taken(name: str) -> ApiError:
    return ApiError(409, "name_taken", f"a dataset named {name!r} already exists (yours or a public one)", "name")


async def _rename(conn, row, name: str) -> dict:
    if row["source"] == "public_file":
        raise _from_file(row, "rename it")
    if await store.is_openai_file(conn, row["id"]):
        raise ApiError(
            409, "openai_file", "cannot rename it: this dataset is an OpenAI file, named by its file id", "name"
        )
    if await store.name_taken(conn, name=name, visibility=row["visibility"], owner_id=row["owner_id"]):
        raise name_taken(name)
    jobs = await readmodels.active_jobs_using_dataset(conn, row["info_key"])
    if jobs:
        raise _in_use(jobs, "rename it")
    key = info_key(name, row["visibility"], row["owner_id"])
    return {"name": name, "info_key": key}


async def delete_dataset(ctx: Context, caller: Principal, dataset_id: str) -> None:
    """Delete a dataset no pending or running job uses; then its stored files, when the platform owns them."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await visible_row(conn, caller, dataset_id, lock=True)
        _check_editable(row, caller)
        if row["source"] == "public_file":
            raise _from_file(row, "delete it")
        jobs = await readmodels.active_jobs_using_dataset(conn, row["info_key"])
        if jobs:
            raise _in_use(jobs, "delete it")
        await store.delete_dataset(conn, dataset_id)
    await refresh_info(ctx)
    if row["managed"] and row["file_name"]:
        try:
            await asyncio.to_thread(remove_stored, ctx.layout.stored_path(row["file_name"]))
        except (OSError, UnsafePath) as exc:
            log.warning("dataset %s deleted but its files stay: %s", dataset_id, exc)
    # An OpenAI file's bytes as uploaded (layout.py), if the dataset is one.
    await asyncio.to_thread(remove_stored, ctx.layout.original_path(dataset_id))
    if ctx.inputs is not None:
        await _unstore(ctx, dataset_id, _files_of(row))


def _files_of(row) -> list[dict]:
    files = row["files"]
    return json.loads(files) if isinstance(files, str) else list(files or [])


async def _unstore(ctx: Context, dataset_id: str, files: list[dict]) -> None:
    """`objects` mode: the deleted dataset's files go from the store too, unless another dataset has the same
    bytes or an unfinished job brings them (objects are named by content); what is kept counts against no quota."""
    assert ctx.inputs is not None
    for sha256 in {str(f["sha256"]) for f in files if f.get("sha256")}:
        name = Buckets.dataset_object(sha256)
        try:
            async with ctx.pool.acquire() as conn:
                if await store.file_in_use(conn, sha256) or await readmodels.active_jobs_fetching(
                    conn, Buckets.DATASETS, name
                ):
                    continue
            await objects.delete(ctx.inputs.js, Buckets.DATASETS, name)
        except Exception as exc:  # noqa: BLE001 - the dataset is deleted; its object is only left behind
            log.warning("dataset %s deleted but its object %s stays: %s", dataset_id, name, exc)


async def download_path(ctx: Context, caller: Principal, dataset_id: str) -> tuple[Path, str]:
    """(file or folder, name to download it as) of a dataset the caller may see."""
    async with ctx.pool.acquire() as conn:
        row = await visible_row(conn, caller, dataset_id)
    paths = local_paths(ctx, row)
    path = ctx.layout.stored_path(row["file_name"])
    if path.is_dir():
        return path, f"{row['name']}.zip"
    return paths[0], f"{row['name']}{paths[0].suffix}"
