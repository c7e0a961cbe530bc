"""OpenAI's Files API on the datasets service: a file is a private dataset of its owner, named by the file id.

A file is received like a dataset upload (streamed to its own incoming folder, held to the owner's quota and to
LLMCT_OPENAI_FILE_MAX_BYTES per request), converted line by line (openai_lines.py) and checked by the datasets'
own row checks, then stored as a dataset whose name is the file id; its bytes as uploaded are kept beside it for
`GET /v1/files/{id}/content`. A bad line refuses the whole file with a 400 naming the line: no file is stored
with status `error`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import msgspec

from services.common.errors import ApiError
from services.common.objects import file_sha256
from services.common.security import Principal, new_id

from . import ingest, openai_store, quota
from .layout import remove_stored
from .openai_lines import LineProblem, convert_file, dataset_of
from .service import Context, delete_dataset, refresh_info
from .uploads import Form, receive

PURPOSES = ("fine-tune",)
FILE_FORM = Form(file_field="file", text_fields=frozenset({"purpose"}), max_files=1, what="file")
REQUEST_CAP = (
    "the limit of one file request, {:,} bytes (LLMCT_OPENAI_FILE_MAX_BYTES): send a larger file in parts "
    "with the Uploads API (POST /v1/uploads)"
)


class FileObject(msgspec.Struct, kw_only=True):
    """OpenAI's file object."""

    id: str
    object: str = "file"
    bytes: int
    created_at: int
    """Unix seconds."""
    filename: str
    purpose: str
    status: str = "processed"
    """`processed`: a file that fails its checks is refused with a 400 naming its first bad line, never stored."""
    status_details: str | None = None


class FileList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[FileObject]
    has_more: bool
    first_id: str | None
    last_id: str | None


class DeletedFile(msgspec.Struct, kw_only=True):
    id: str
    object: str = "file"
    deleted: bool = True


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


def no_such_file(file_id: str) -> ApiError:
    """The one answer for a file that does not exist or is another user's."""
    return ApiError(404, "not_found", f"No such File object: {file_id[:100]}", "file_id")


def check_purpose(purpose: str | None) -> str:
    if purpose not in PURPOSES:
        said = "is missing" if purpose is None else f"{purpose[:40]!r} is not supported"
        raise ApiError(400, "invalid_purpose", f"`purpose` {said}: this platform takes `fine-tune` files", "purpose")
    return purpose


def to_file(row) -> FileObject:
    return FileObject(
        id=row["id"],
        bytes=row["bytes"],
        created_at=int(row["created_at"].timestamp()),
        filename=row["filename"],
        purpose=row["purpose"],
    )


async def _early(name: str, value: str) -> None:
    if name == "purpose":
        check_purpose(value)  # before the file's bytes come


async def create_file(
    ctx: Context, caller: Principal, stream: AsyncIterator[bytes], content_type: str | None, length: int | None
) -> FileObject:
    """`POST /v1/files`: receive, convert, check and store; 4xx with nothing left behind when anything is wrong."""
    budget = await quota.budget_for(ctx.pool, ctx.settings, caller.user_id)
    budget = replace(budget, cap=min(budget.cap, ctx.settings.openai_file_max_bytes), cap_said=REQUEST_CAP)
    if length and length > budget.limit + ingest.MULTIPART_SLACK:
        raise budget.refusal("the file")
    folder = ctx.layout.new_incoming()
    try:
        received = await receive(stream, content_type, folder, budget, _early, form=FILE_FORM)
        purpose = check_purpose(received.fields.get("purpose"))
        sent = received.files[0]
        return await store_file(ctx, caller, sent.path, sent.original, purpose, folder)
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)


async def store_file(
    ctx: Context, caller: Principal, source: Path, filename: str, purpose: str, folder: Path
) -> FileObject:
    """Convert the received `source` (in `folder`, an incoming folder) and store it as the caller's file."""
    converted_path = folder / "converted.jsonl"
    try:
        converted = await asyncio.to_thread(convert_file, source, converted_path)
    except LineProblem as exc:
        raise ApiError(
            400, "invalid_file", f"{filename[:100]}: {exc}; fix it and upload the file again", "file"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_file", f"{filename[:100]} is not UTF-8 text", "file") from exc
    fmt, columns, tags = dataset_of(converted)
    checked = await ingest.check_content([converted_path], fmt, columns, tags, pool=ctx.checks)
    size, sha256 = converted_path.stat().st_size, await asyncio.to_thread(file_sha256, converted_path)
    part = ingest.Part(converted_path, filename, size, sha256)
    file_id, dataset_id = new_file_id(), new_id("ds")
    target, file_name, files = await asyncio.to_thread(ingest.place, ctx.layout, dataset_id, [part], folder)
    original = ctx.layout.original_path(dataset_id)
    original.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, original)
    sent_bytes = original.stat().st_size

    async def record(conn) -> None:
        await openai_store.insert_file(
            conn,
            file_id=file_id,
            dataset_id=dataset_id,
            owner_id=caller.user_id,
            filename=filename,
            purpose=purpose,
            kind=converted.kind,
            size=sent_bytes,
        )

    try:
        await ingest.insert(
            ctx,
            caller,
            dataset_id=dataset_id,
            name=file_id,
            fmt=fmt,
            visibility="private",
            source="upload",
            columns=checked.columns,
            tags=tags,
            file_name=file_name,
            files=files,
            managed=True,
            rows=checked.rows,
            size_bytes=size,
            checksum=ingest.checksum_of(files),
            signature=None,
            remark=f"OpenAI file {file_id} ({filename[:200]}, {converted.kind})",
            then=record,
        )
    except BaseException:
        await asyncio.to_thread(remove_stored, target)
        await asyncio.to_thread(remove_stored, original)
        raise
    await refresh_info(ctx)
    return await get_file(ctx, caller, file_id)


async def get_file(ctx: Context, caller: Principal, file_id: str) -> FileObject:
    async with ctx.pool.acquire() as conn:
        row = await openai_store.own_file(conn, file_id, caller.user_id)
    if row is None:
        raise no_such_file(file_id)
    return to_file(row)


async def list_files(
    ctx: Context, caller: Principal, *, after: str | None, limit: int, order: str, purpose: str | None
) -> FileList:
    async with ctx.pool.acquire() as conn:
        if after and not await openai_store.file_exists(conn, after, caller.user_id):
            raise ApiError(400, "invalid_cursor", f"`after` names no file of yours: {after[:100]}", "after")
        rows = await openai_store.list_files(
            conn, caller.user_id, purpose=purpose, after=after, newest_first=order == "desc", limit=limit + 1
        )
    data = [to_file(row) for row in rows[:limit]]
    return FileList(
        data=data,
        has_more=len(rows) > limit,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )


async def content_path(ctx: Context, caller: Principal, file_id: str) -> tuple[Path | bytes, str]:
    """(the bytes as uploaded, or held in its row for a results file; the file's name) of the caller's file."""
    async with ctx.pool.acquire() as conn:
        row = await openai_store.own_file(conn, file_id, caller.user_id)
        held = None
        if row is not None and row["dataset_id"] is None:
            held = await openai_store.held_content(conn, file_id, caller.user_id)
    if row is None:
        raise no_such_file(file_id)
    if held is not None:
        return held, row["filename"]
    return ctx.layout.original_path(row["dataset_id"]), row["filename"]


async def delete_file(ctx: Context, caller: Principal, file_id: str) -> DeletedFile:
    """Delete the file and its dataset; 409 while a pending or running job uses it."""
    async with ctx.pool.acquire() as conn:
        row = await openai_store.own_file(conn, file_id, caller.user_id)
    if row is None:
        raise no_such_file(file_id)
    if row["dataset_id"] is None:  # a results file: its job still lists its id, as OpenAI's does (docs/openai.md)
        async with ctx.pool.acquire() as conn:
            await openai_store.delete_held(conn, file_id, caller.user_id)
    else:
        await delete_dataset(ctx, caller, row["dataset_id"])
    return DeletedFile(id=file_id)
