"""Datasets that are not uploaded: a file or folder already in the data folder (admins), or a hub id."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.common.errors import ApiError
from services.common.security import Principal, new_id

from . import formats, readers
from .catalog import signature_of
from .ingest import (
    check_content,
    check_mapping,
    check_one_loader,
    check_visibility,
    checksum_of,
    ensure_name_free,
    insert,
    invalid,
)
from .layout import UnsafePath
from .schemas import Dataset, RegisterRequest
from .service import Context, get_dataset, refresh_info


async def register(ctx: Context, caller: Principal, req: RegisterRequest) -> Dataset:
    """A dataset from a file already in the data folder (admins) or from a hub (where hosts reach one)."""
    if (req.path is None) == (req.hub is None and req.hub_id is None):
        raise invalid("give either `path` (a file under the data folder) or `hub` and `hub_id`", "path")
    check_visibility(caller, req.visibility)
    mapping, tags = check_mapping(req.format, req.columns, req.tags)
    async with ctx.pool.acquire() as conn:
        await ensure_name_free(conn, req.name, req.visibility, caller.user_id)
    dataset_id = new_id("ds")
    common = {
        "dataset_id": dataset_id,
        "name": req.name,
        "fmt": req.format,
        "visibility": req.visibility,
        "tags": tags,
        "remark": req.remark,
    }
    if req.path is not None:
        await insert(ctx, caller, **common, **await _from_path(ctx, caller, req, mapping, tags))
    else:
        await insert(ctx, caller, **common, **_from_hub(ctx, req, mapping))
    await refresh_info(ctx)
    return await get_dataset(ctx.pool, caller, dataset_id)


async def _from_path(ctx: Context, caller: Principal, req: RegisterRequest, mapping: dict, tags: dict) -> dict:
    layout = ctx.layout
    if not caller.is_admin:
        raise ApiError(
            403, "forbidden", "registering a file of the data folder is for admins; upload it instead", "path"
        )
    if req.path is None:  # register() comes here only for a request with a path
        raise RuntimeError("_from_path needs a request with a path")
    try:
        target = layout.resolve(req.path)
    except UnsafePath as exc:
        raise ApiError(422, "unsafe_path", str(exc), "path") from exc
    paths = await asyncio.to_thread(_folder_files, target, req.path)
    check_one_loader(paths)
    checked = await check_content(paths, req.format, mapping, tags, field="path", pool=ctx.checks)
    files = await asyncio.to_thread(_measure, paths)
    return {
        "source": "file",
        "columns": checked.columns,
        "managed": False,
        "rows": checked.rows,
        "file_name": target.relative_to(layout.root.resolve()).as_posix(),
        "files": files,
        "size_bytes": sum(f["size_bytes"] for f in files),
        "checksum": checksum_of(files),
        "signature": signature_of(paths),
    }


def _folder_files(target: Path, given: str) -> list[Path]:
    """The dataset files a registered path stands for; the engine loads every entry of a folder."""
    if not target.exists():
        raise ApiError(422, "no_such_file", f"{given!r} does not exist in the data folder", "path")
    if target.is_file():
        if not readers.file_type(target.name):
            raise ApiError(422, "unsupported_file_type", f"{given!r} is not .json, .jsonl, .csv or .parquet", "path")
        return [target]
    entries = sorted(target.iterdir())
    if not entries or any(not e.is_file() or not readers.file_type(e.name) for e in entries):
        raise ApiError(
            422,
            "unsupported_file_type",
            f"the folder {given!r} must hold only dataset files "
            "(.json, .jsonl, .csv or .parquet), no folders or other files",
            "path",
        )
    return entries


def _measure(paths: list[Path]) -> list[dict]:
    return [{"name": p.name, "size_bytes": p.stat().st_size, "sha256": readers.sha256_of(p)} for p in paths]


def _from_hub(ctx: Context, req: RegisterRequest, mapping: dict) -> dict:
    if not ctx.settings.hub_access:
        raise ApiError(
            422,
            "hub_unreachable",
            "this platform's hosts cannot reach a dataset hub "
            "(LLMCT_DATASET_HUB_ACCESS is off): upload the dataset instead",
            "hub",
        )
    if not req.hub or not req.hub_id:
        raise invalid("a hub dataset needs both `hub` and `hub_id`", "hub_id" if req.hub else "hub")
    hub = {"hf_hub_url" if req.hub == "huggingface" else "ms_hub_url": req.hub_id, "split": req.split}
    if req.subset:
        hub["subset"] = req.subset
    return {
        "source": "hub",
        "columns": formats.settle_columns(req.format, mapping, set()),
        "managed": False,
        "rows": None,
        "file_name": None,
        "files": [],
        "size_bytes": None,
        "checksum": None,
        "signature": None,
        "hub": hub,
    }
