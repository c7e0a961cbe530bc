"""OpenAI's Uploads API: a large file sent in parts (each ≤ 64 MiB) that complete into a file.

An upload owns an incoming folder of the datasets service (layout.py): each part streams to disk there (never held
in memory), `complete` joins the parts in the order given and stores the result as `POST /v1/files` stores a file
(the same checks). Cancel, expiry (an hour after creation) and completion remove the folder."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

from services.common.errors import ApiError
from services.common.security import Principal, utcnow

from . import openai_store, quota
from .openai_files import FileObject, check_purpose, get_file, store_file
from .service import Context
from .uploads import Budget, Form, receive, safe_client_name

log = logging.getLogger(__name__)

PART_MAX_BYTES = 64 << 20
EXPIRES_AFTER = timedelta(hours=1)
PART_FORM = Form(file_field="data", text_fields=frozenset(), max_files=1, what="part's bytes")
MIME_TYPES = ("application/jsonl", "application/json", "application/x-ndjson", "text/jsonl", "text/plain")
COPY_BUFFER = 1 << 20


class UploadRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    filename: Annotated[str, Meta(min_length=1, max_length=255)]
    purpose: str
    bytes: Annotated[int, Meta(ge=1)]
    mime_type: Annotated[str, Meta(max_length=100)]


class CompleteRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    part_ids: Annotated[list[str], Meta(min_length=1, max_length=10_000)]
    md5: Annotated[str, Meta(max_length=64)] | None = None


class UploadObject(msgspec.Struct, kw_only=True):
    """OpenAI's upload object."""

    id: str
    object: str = "upload"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str
    """pending, completed, cancelled or expired."""
    expires_at: int
    file: FileObject | None = None


class PartObject(msgspec.Struct, kw_only=True):
    id: str
    object: str = "upload.part"
    created_at: int
    upload_id: str


def to_upload(row, file: FileObject | None = None) -> UploadObject:
    return UploadObject(
        id=row["id"],
        bytes=row["bytes"],
        created_at=int(row["created_at"].timestamp()),
        filename=row["filename"],
        purpose=row["purpose"],
        status=row["status"],
        expires_at=int(row["expires_at"].timestamp()),
        file=file,
    )


def no_such_upload(upload_id: str) -> ApiError:
    return ApiError(404, "not_found", f"No such Upload object: {upload_id[:100]}", "upload_id")


async def create_upload(ctx: Context, caller: Principal, data: UploadRequest) -> UploadObject:
    """`POST /v1/uploads`: an upload expecting `bytes` bytes in parts, for an hour."""
    check_purpose(data.purpose)
    safe_client_name(data.filename)
    if data.mime_type.split(";")[0].strip().lower() not in MIME_TYPES:
        raise ApiError(400, "invalid_mime_type", f"`mime_type` must be one of {', '.join(MIME_TYPES)}", "mime_type")
    budget = await quota.budget_for(ctx.pool, ctx.settings, caller.user_id)
    async with ctx.pool.acquire() as conn:  # pending uploads hold their room: many at once fill no disk
        budget = replace(budget, used=budget.used + await openai_store.pending_bytes(conn, caller.user_id))
    if data.bytes > budget.limit:
        raise budget.refusal(f"the upload ({data.bytes:,} bytes, beside your pending uploads)")
    folder = ctx.layout.new_incoming()
    try:
        async with ctx.pool.acquire() as conn:
            row = await openai_store.insert_upload(
                conn,
                upload_id=f"upload_{secrets.token_hex(12)}",
                owner_id=caller.user_id,
                filename=data.filename,
                purpose=data.purpose,
                size=data.bytes,
                mime_type=data.mime_type,
                folder=folder.name,
                expires_at=utcnow() + EXPIRES_AFTER,
            )
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, folder, True)
        raise
    return to_upload(row)


def _folder(ctx: Context, row) -> Path:
    return ctx.layout.incoming_folder(row["folder"])


async def _pending(ctx: Context, conn, caller: Principal, upload_id: str):
    """The caller's upload, locked, still taking parts; 404 when it is not theirs, 400 when it is done."""
    row = await openai_store.own_upload(conn, upload_id, caller.user_id, lock=True)
    if row is None:
        raise no_such_upload(upload_id)
    if row["status"] == "pending" and row["expires_at"] <= utcnow():
        await openai_store.set_upload_status(conn, upload_id, "expired")
        await asyncio.to_thread(shutil.rmtree, _folder(ctx, row), True)
        row = {**row, "status": "expired"}
    if row["status"] != "pending":
        raise ApiError(
            400, "upload_not_pending", f"the upload is {row['status']}: create a new one to send the file", "upload_id"
        )
    return row


def _part_budget(room: int) -> Budget:
    if room >= PART_MAX_BYTES:
        return Budget(cap=PART_MAX_BYTES, cap_said="the largest part, {:,} bytes (64 MiB)", field="data")
    return Budget(cap=room, cap_said="what is left of the upload's declared `bytes`: {:,} bytes", field="data")


async def add_part(
    ctx: Context, caller: Principal, upload_id: str, stream: AsyncIterator[bytes], content_type: str | None
) -> PartObject:
    """`POST /v1/uploads/{id}/parts`: one part (multipart `data`), streamed to the upload's folder."""
    async with ctx.pool.acquire() as conn:
        row = await _pending(ctx, conn, caller, upload_id)
        room = row["bytes"] - await openai_store.received_bytes(conn, upload_id)
    if room <= 0:
        raise ApiError(400, "upload_full", "the parts sent already hold the upload's declared `bytes`", "data")
    part_id = f"part_{secrets.token_hex(12)}"
    folder = _folder(ctx, row)
    landing = folder / part_id
    try:
        landing.mkdir(mode=0o700)
        received = await receive(stream, content_type, landing, _part_budget(room), _ignore, form=PART_FORM)
        os.replace(received.files[0].path, folder / f"{part_id}.part")
        async with ctx.pool.acquire() as conn:
            await _pending(ctx, conn, caller, upload_id)  # not cancelled meanwhile
            part = await openai_store.insert_part(conn, part_id, upload_id, received.files[0].size)
    except FileNotFoundError as exc:
        raise ApiError(400, "upload_not_pending", "the upload was cancelled or expired meanwhile", "upload_id") from exc
    finally:
        await asyncio.to_thread(shutil.rmtree, landing, True)
    return PartObject(id=part_id, created_at=int(part["created_at"].timestamp()), upload_id=upload_id)


async def _ignore(name: str, value: str) -> None:
    return None


def _join(folder: Path, part_ids: list[str], target: Path) -> str:
    """Write the parts one after the other into `target` (blocking); their md5."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(target, "wb") as out:
        for part_id in part_ids:
            with open(folder / f"{part_id}.part", "rb") as part:
                while chunk := part.read(COPY_BUFFER):
                    digest.update(chunk)
                    out.write(chunk)
    return digest.hexdigest()


def _check_parts(row, parts: dict[str, int], part_ids: list[str]) -> None:
    unknown = [part_id for part_id in part_ids if part_id not in parts]
    if unknown:
        raise ApiError(400, "invalid_part", f"{unknown[0][:100]} is not a part of this upload", "part_ids")
    if len(set(part_ids)) != len(part_ids):
        raise ApiError(400, "invalid_part", "a part is named twice in `part_ids`", "part_ids")
    total = sum(parts[part_id] for part_id in part_ids)
    if total != row["bytes"]:
        raise ApiError(
            400,
            "size_mismatch",
            f"the parts named hold {total:,} bytes but the upload declared {row['bytes']:,}",
            "part_ids",
        )


async def complete(ctx: Context, caller: Principal, upload_id: str, data: CompleteRequest) -> UploadObject:
    """`POST /v1/uploads/{id}/complete`: join the parts in order and store them as a file (as POST /v1/files)."""
    async with ctx.pool.acquire() as conn, conn.transaction():  # the lock keeps a second complete or a cancel out
        row = await _pending(ctx, conn, caller, upload_id)
        _check_parts(row, await openai_store.parts_of(conn, upload_id), data.part_ids)
        folder = _folder(ctx, row)
        joined = folder / "joined"
        try:
            md5 = await asyncio.to_thread(_join, folder, data.part_ids, joined)
            if data.md5 is not None and data.md5.lower() != md5:
                raise ApiError(400, "md5_mismatch", f"the parts' md5 is {md5}, not the `md5` given", "md5")
            file = await store_file(ctx, caller, joined, row["filename"], row["purpose"], folder)
        except FileNotFoundError as exc:  # the sweeper took a folder idle for longer than LLMCT_UPLOAD_MAX_AGE_S
            raise ApiError(
                400, "upload_parts_gone", "the upload's parts were removed (idle too long): start a new upload"
            ) from exc
        finally:  # a refused file leaves the upload pending, its parts kept: cancel it or let it expire
            joined.unlink(missing_ok=True)
            (folder / "converted.jsonl").unlink(missing_ok=True)
        row = await openai_store.set_upload_status(conn, upload_id, "completed", file.id)
    await asyncio.to_thread(shutil.rmtree, folder, True)
    return to_upload(row, await get_file(ctx, caller, file.id))


async def cancel(ctx: Context, caller: Principal, upload_id: str) -> UploadObject:
    """`POST /v1/uploads/{id}/cancel`: no more parts; the parts sent are removed."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await _pending(ctx, conn, caller, upload_id)
        row = await openai_store.set_upload_status(conn, upload_id, "cancelled")
    await asyncio.to_thread(shutil.rmtree, _folder(ctx, row), True)
    return to_upload(row)


async def expire_uploads(ctx: Context) -> int:
    """Mark uploads past their hour expired and remove their parts (the service's sweeper calls it)."""
    async with ctx.pool.acquire() as conn:
        rows = await openai_store.expired_uploads(conn, utcnow())
    for row in rows:
        await asyncio.to_thread(shutil.rmtree, _folder(ctx, row), True)
    return len(rows)
