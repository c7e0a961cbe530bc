"""Uploads: streamed to disk, checked, then moved into place; and the checks registrations share.

Nothing is usable until every check passed: an upload is received and unpacked in its own incoming
folder, scanned row by row, and only then renamed into `uploads/` and inserted. Any failure on the way
removes the folder, so nothing half-written stays behind.

In `objects` storage mode each plain data file (not an archive: its files exist only once it is unpacked, and
go into the store on a job's first use, as before) also streams into the datasets bucket as it arrives; its
object is named (by its sha256) only once the dataset is inserted, and given up otherwise, so a refused or broken
upload leaves nothing in the store and an accepted one needs no copy when its first job runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg
import msgspec

from services.common.contracts import Buckets
from services.common.errors import ApiError
from services.common.object_writer import ObjectWriter
from services.common.security import Principal, new_id

from . import archives, checks, formats, quota, readers, scan, store
from .catalog import manifest_digest
from .checks import CheckPool, Plan, StreamCheck
from .layout import DataLayout, remove_stored
from .linescan import Partial
from .schemas import NAME_RULE, Dataset, DatasetName, UploadFields
from .service import Context, get_dataset, info_key, name_taken, refresh_info
from .uploads import Budget, FileTap, ReceivedFile, receive

log = logging.getLogger(__name__)

# What a multipart body may carry beyond the file itself (boundaries, part headers, text fields).
MULTIPART_SLACK = 1 << 20
# Loader LLaMA-Factory uses per extension: the files of one dataset must share one.
LOADERS = {"json": "json", "jsonl": "json", "csv": "csv", "parquet": "parquet"}
_FIELD_IN_MESSAGE = re.compile(r"at `\$\.([A-Za-z_]+)|missing required field `([A-Za-z_]+)`")


@dataclass
class Part:
    """One data file of a dataset being received: the platform's name for it and what it was called."""

    path: Path
    original: str
    size: int
    sha256: str
    checked: Partial | None = None
    """Its rows' check, when it ran while the file streamed in (JSON lines)."""


@dataclass
class Checked:
    rows: int
    columns: dict[str, str]


def invalid(message: str, field: str | None) -> ApiError:
    return ApiError(422, "invalid_field", message, field)


# --- fields ------------------------------------------------------------------------------------------------


def _validation_error(exc: msgspec.ValidationError) -> ApiError:
    match = _FIELD_IN_MESSAGE.search(str(exc))
    field = (match.group(1) or match.group(2)) if match else None
    if field == "name" and "regex" in str(exc):
        return invalid(f"name must be {NAME_RULE}", "name")
    return invalid(str(exc), field)


def parse_fields(fields: dict[str, str]) -> UploadFields:
    """The upload's text parts, checked like a JSON body (columns and tags are JSON objects)."""
    raw: dict[str, object] = dict(fields)
    for key in ("columns", "tags"):
        if key in raw:
            try:
                raw[key] = json.loads(str(raw[key]) or "{}")
            except ValueError as exc:
                raise invalid(f'`{key}` must be a JSON object such as {{"prompt": "question"}}', key) from exc
    try:
        return msgspec.convert(raw, UploadFields)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc) from exc


def check_visibility(caller: Principal, visibility: str) -> None:
    if visibility == "public" and not caller.is_admin:
        raise ApiError(403, "forbidden", "only admins create public datasets", "visibility")


def check_mapping(fmt: str, columns: dict[str, str], tags: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Column roles the format knows, and sharegpt tags; 422 naming the first unknown one."""
    spec = formats.spec(fmt)
    roles = spec.required + spec.optional
    for role in columns:
        if role not in roles:
            raise invalid(
                f"`{role}` is not a column role of the {fmt} format; its roles are " + ", ".join(roles),
                f"columns.{role}",
            )
    if tags and fmt != "sharegpt":
        raise invalid("tags apply to sharegpt datasets only", "tags")
    for tag in tags:
        if tag not in formats.SHAREGPT_TAGS:
            raise invalid(
                f"`{tag}` is not a sharegpt tag; the tags are " + ", ".join(formats.SHAREGPT_TAGS), f"tags.{tag}"
            )
    return dict(columns), dict(tags)


def early_check(caller: Principal):
    """Check each text part as it arrives, so a bad name is refused before gigabytes of file follow it."""

    async def check(name: str, value: str) -> None:
        try:
            if name == "name":
                msgspec.convert(value, DatasetName)
            elif name == "format" and value not in formats.FORMATS:
                raise invalid(f"format must be one of {', '.join(formats.FORMATS)}", "format")
            elif name == "visibility":
                check_visibility(caller, value)
        except msgspec.ValidationError as exc:
            raise invalid(f"name must be {NAME_RULE}", "name") from exc

    return check


async def ensure_name_free(conn, name: str, visibility: str, owner_id: str) -> None:
    if await store.name_taken(conn, name=name, visibility=visibility, owner_id=owner_id):
        raise name_taken(name)


# --- content -----------------------------------------------------------------------------------------------


def collect_parts(
    files: list[ReceivedFile], folder: Path, limits: archives.Limits, checked: dict[Path, Partial] | None = None
) -> list[Part]:
    """Every data file of the upload, archives unpacked, renamed part-NNNNN.<ext> (blocking); `checked`: the
    received files whose rows were checked as they streamed in."""
    parts: list[Part] = []
    for received in files:
        if archives.is_archive(received.original):
            left = replace(limits, budget=limits.budget.after(sum(p.size for p in parts)))
            for item in archives.unpack(received.path, received.original, folder, len(parts), left):
                parts.append(Part(item.path, f"{received.original}:{item.original}", item.size, item.sha256))
            received.path.unlink()
        elif readers.file_type(received.original):
            target = folder / f"part-{len(parts):05d}{Path(received.original).suffix.lower()}"
            os.replace(received.path, target)
            found = (checked or {}).get(received.path)
            parts.append(Part(target, received.original, received.size, received.sha256, found))
        else:
            raise ApiError(
                422,
                "unsupported_file_type",
                f"{received.original[:200]!r} is not a dataset file: upload "
                ".json, .jsonl, .csv or .parquet (or a .zip / .tar.gz of them)",
                "file",
            )
    check_one_loader([p.path for p in parts])
    if sum(p.size for p in parts) > limits.budget.limit:
        raise limits.budget.refusal()
    return parts


def _loader(path: Path) -> str:
    kind = readers.file_type(path.name)
    if kind is None:  # callers pass only files already checked to be dataset files
        raise RuntimeError(f"{path.name} is not a dataset file")
    return LOADERS[kind]


def check_one_loader(paths: list[Path]) -> None:
    loaders = {_loader(p) for p in paths}
    if len(loaders) > 1:
        raise ApiError(
            422,
            "invalid_dataset",
            "the files of one dataset must share a type (the engine loads them "
            f"together); found {', '.join(sorted(loaders))}",
            "file",
        )


async def check_content(
    paths: list[Path],
    fmt: str,
    mapping: dict[str, str],
    tags: dict[str, str],
    field: str = "file",
    checked_lines: dict[Path, Partial] | None = None,
    pool: CheckPool | None = None,
) -> Checked:
    """Scan every row: 422 saying which rows are wrong and why, or for an empty dataset. `checked_lines`: JSON
    lines files whose rows were checked already (as they streamed in); `pool`: workers for large ones not yet."""
    columns = formats.spec(fmt).columns(mapping)
    checked_lines = dict(checked_lines or {})
    if pool is not None:
        plan = Plan(fmt, columns, tags)
        for path in paths:
            if path not in checked_lines and await asyncio.to_thread(_large_json_lines, path):
                if (found := await checks.check_file(pool, path, plan)) is not None:
                    checked_lines[path] = found
    try:
        result = await asyncio.to_thread(scan.scan, paths, fmt, columns, tags, checked_lines)
    except readers.DatasetProblem as exc:
        raise ApiError(422, "invalid_dataset", f"the file cannot be used: {exc}", field) from exc
    if result.bad_rows:
        more = "; …" if result.bad_rows > len(result.first_bad) else ""
        raise ApiError(
            422,
            "invalid_dataset",
            f"{result.bad_rows} of {result.rows} rows do not fit the {fmt} format: "
            + "; ".join(result.first_bad)
            + more,
            field,
        )
    if result.rows == 0:
        raise ApiError(422, "empty_dataset", "the dataset has no rows", field)
    for role, column in mapping.items():
        if role not in formats.spec(fmt).required and column not in result.columns:
            raise invalid(f"columns.{role} names `{column}`, which no row has", f"columns.{role}")
    return Checked(rows=result.rows, columns=formats.settle_columns(fmt, mapping, result.columns))


def _large_json_lines(path: Path) -> bool:
    """Worth cutting into ranges for the workers (blocking)."""
    try:
        return path.stat().st_size >= 2 * checks.SEGMENT_BYTES and readers.is_json_lines(path)
    except readers.DatasetProblem:
        return False  # the scan says what is wrong with it


def place(layout: DataLayout, dataset_id: str, parts: list[Part], folder: Path) -> tuple[Path, str, list[dict]]:
    """Rename the checked files into uploads/ (same filesystem: atomic); returns (target, file_name, files)."""
    layout.uploads.mkdir(parents=True, exist_ok=True)
    if len(parts) == 1:
        target, file_name = layout.upload_target(dataset_id, parts[0].path.suffix)
        os.replace(parts[0].path, target)
        names = [target.name]
    else:
        bundle = folder / "bundle"
        bundle.mkdir()
        for part in parts:
            os.replace(part.path, bundle / part.path.name)
        target, file_name = layout.upload_target(dataset_id, None)
        os.replace(bundle, target)
        names = [part.path.name for part in parts]
    files = [
        {"name": name, "size_bytes": part.size, "sha256": part.sha256, "original": part.original[:300]}
        for name, part in zip(names, parts, strict=True)
    ]
    return target, file_name, files


def checksum_of(files: list[dict]) -> str:
    return files[0]["sha256"] if len(files) == 1 else manifest_digest(files)


# --- upload ------------------------------------------------------------------------------------------------


@dataclass
class Accepted:
    """An upload that passed every check, still in its incoming folder."""

    fields: UploadFields
    tags: dict[str, str]
    parts: list[Part]
    checked: Checked


def archive_limits(ctx: Context, budget: Budget) -> archives.Limits:
    settings = ctx.settings
    return archives.Limits(
        max_members=settings.archive_max_members, max_ratio=settings.archive_max_ratio, budget=budget
    )


def plan_of(fields: dict[str, str]) -> Plan | None:
    """The row check a file part gets, from the text fields sent before it; None when they do not say yet."""
    try:
        parsed = parse_fields({**fields, "name": "probe"})
        mapping, tags = check_mapping(parsed.format, parsed.columns, parsed.tags)
    except ApiError:
        return None
    return Plan(parsed.format, formats.spec(parsed.format).columns(mapping), tags)


class _Streams:
    """What runs while an upload's files stream in: the row checks (checks.py), one per JSON-lines file part,
    and in `objects` storage mode each plain data file's object in the datasets bucket."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.started: list[tuple[ReceivedFile, StreamCheck]] = []
        self.writers: list[tuple[ReceivedFile, ObjectWriter]] = []

    def writer_for(self, received: ReceivedFile) -> ObjectWriter | None:
        original = received.original
        if self.ctx.inputs is None or archives.is_archive(original) or readers.file_type(original) is None:
            return None  # shared mode, an archive, or no dataset file at all (refused once received)
        writer = ObjectWriter(self.ctx.inputs.js, Buckets.DATASETS)
        self.writers.append((received, writer))
        return writer

    async def store(self, parts: list[Part]) -> None:
        """Name the objects of the dataset's files (by their sha256): they are stored, its first job copies
        nothing. A failure leaves the file to that first job (as for an archive's files) and fails nothing."""
        kept = {part.sha256 for part in parts}
        for received, writer in self.writers:
            if writer.aborted or received.sha256 not in kept:
                continue
            kept.discard(received.sha256)  # the same file twice in one upload: stored once
            try:
                await writer.commit(Buckets.dataset_object(received.sha256))
            except Exception as exc:  # noqa: BLE001 - the dataset is accepted and kept on disk already
                log.warning("dataset file %s not stored on upload (its first job copies it): %s", received.sha256, exc)

    async def give_up(self) -> None:
        """Purge what was streamed of every object not stored: a refused, failed or abandoned upload's."""
        for _, writer in self.writers:
            await writer.abort()

    def on_file(self, received: ReceivedFile, fields: dict[str, str], flush) -> FileTap | None:
        kind = readers.file_type(received.original)
        plan = plan_of(fields) if kind in ("json", "jsonl") else None
        if plan is None:
            return None
        check = StreamCheck(self.ctx.checks, received.path, plan, flush, json_suffix=kind == "json")
        self.started.append((received, check))
        return check

    async def results(self, plan: Plan) -> dict[Path, Partial]:
        """What the checks found, by received file; those made against another plan (a `columns` field sent
        after the file) are dropped, and their files checked after the upload."""
        found: dict[Path, Partial] = {}
        for received, check in self.started:
            if check.plan != plan:
                check.cancel()
            elif (result := await check.result()) is not None:
                found[received.path] = result
        return found

    def cancel(self) -> None:
        for _, check in self.started:
            check.cancel()


async def _accept(
    ctx: Context,
    caller: Principal,
    stream: AsyncIterator[bytes],
    content_type: str | None,
    folder: Path,
    budget: Budget,
    streams: _Streams,
) -> Accepted:
    started = time.perf_counter()
    try:
        received = await receive(
            stream, content_type, folder, budget, early_check(caller), streams.on_file, streams.writer_for
        )
        received_s = time.perf_counter() - started
        fields = parse_fields(received.fields)
        check_visibility(caller, fields.visibility)
        mapping, tags = check_mapping(fields.format, fields.columns, fields.tags)
        async with ctx.pool.acquire() as conn:
            await ensure_name_free(conn, fields.name, fields.visibility, caller.user_id)
        plan = Plan(fields.format, formats.spec(fields.format).columns(mapping), tags)
        streamed = await streams.results(plan)
    finally:
        streams.cancel()  # nothing left to run once the upload is refused (or done)
    limits = archive_limits(ctx, budget)
    parts = await asyncio.to_thread(collect_parts, received.files, folder, limits, streamed)
    checked_lines = {p.path: p.checked for p in parts if p.checked is not None}
    paths = [p.path for p in parts]
    checked = await check_content(paths, fields.format, mapping, tags, checked_lines=checked_lines, pool=ctx.checks)
    log.info(
        "upload %r by %s: %d bytes received in %.2f s, %d rows checked in %.2f s (%d of %d files while receiving)",
        fields.name,
        caller.username,
        sum(p.size for p in parts),
        received_s,
        checked.rows,
        time.perf_counter() - started - received_s,
        len(checked_lines),
        len(parts),
    )
    return Accepted(fields=fields, tags=tags, parts=parts, checked=checked)


async def _keep(ctx: Context, caller: Principal, accepted: Accepted, folder: Path) -> str:
    """Move the checked files into uploads/ and insert the row; the files go again if the insert fails."""
    dataset_id = new_id("ds")
    target, file_name, files = await asyncio.to_thread(place, ctx.layout, dataset_id, accepted.parts, folder)
    if ctx.inputs is not None:  # its first job need not hash the files again
        for path, placed in zip(placed_paths(target, files), files, strict=True):
            ctx.inputs.remember(path, placed["sha256"])
    fields = accepted.fields
    try:
        await insert(
            ctx,
            caller,
            dataset_id=dataset_id,
            name=fields.name,
            fmt=fields.format,
            visibility=fields.visibility,
            source="upload",
            columns=accepted.checked.columns,
            tags=accepted.tags,
            file_name=file_name,
            files=files,
            managed=True,
            rows=accepted.checked.rows,
            size_bytes=sum(f["size_bytes"] for f in files),
            checksum=checksum_of(files),
            signature=None,
            remark=fields.remark,
        )
    except BaseException:
        await asyncio.to_thread(remove_stored, target)
        raise
    return dataset_id


def placed_paths(target: Path, files: list[dict]) -> list[Path]:
    """Where `place` put each file: the target itself, or the files of the target folder."""
    return [target] if target.is_file() else [target / placed["name"] for placed in files]


async def upload(
    ctx: Context, caller: Principal, stream: AsyncIterator[bytes], content_type: str | None, content_length: int | None
) -> Dataset:
    """Receive, check and store an uploaded dataset; 4xx with nothing left behind when anything is wrong."""
    budget = await quota.budget_for(ctx.pool, ctx.settings, caller.user_id)
    if content_length and content_length > budget.limit + MULTIPART_SLACK:
        raise budget.refusal()
    folder = ctx.layout.new_incoming()
    streams = _Streams(ctx)
    try:
        accepted = await _accept(ctx, caller, stream, content_type, folder, budget, streams)
        dataset_id = await _keep(ctx, caller, accepted, folder)
        await streams.store(accepted.parts)
    except FileNotFoundError as exc:
        if folder.exists():
            raise
        raise ApiError(
            408,
            "upload_expired",
            "the upload made no progress for longer than LLMCT_UPLOAD_MAX_AGE_S and was removed: send it again",
            "file",
        ) from exc
    finally:
        await streams.give_up()
        await asyncio.to_thread(shutil.rmtree, folder, True)
    await refresh_info(ctx)
    return await get_dataset(ctx.pool, caller, dataset_id)


async def insert(
    ctx: Context,
    caller: Principal,
    *,
    dataset_id: str,
    name: str,
    fmt: str,
    visibility: str,
    source: str,
    columns: dict,
    tags: dict,
    file_name: str | None,
    files: list[dict],
    managed: bool,
    rows: int | None,
    size_bytes: int | None,
    checksum: str | None,
    signature: str | None,
    remark: str,
    hub: dict | None = None,
    then: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> None:
    """Store a checked dataset; 409 when its name was taken meanwhile, 413 when the owner's quota is full
    (files the platform keeps count against it). `then`: more to write in the same transaction."""
    info = formats.info_entry(fmt, file_name, columns, tags, hub)
    try:
        async with ctx.pool.acquire() as conn, conn.transaction():
            if managed:
                await quota.check_room(conn, ctx.settings, caller.user_id, size_bytes or 0)
            await store.insert_dataset(
                conn,
                id=dataset_id,
                name=name,
                info_key=info_key(name, visibility, caller.user_id),
                visibility=visibility,
                owner_id=caller.user_id,
                source=source,
                format=fmt,
                columns=columns,
                tags={**formats.SHAREGPT_TAGS, **tags} if fmt == "sharegpt" else {},
                file_name=file_name,
                files=files,
                managed=managed,
                rows=rows,
                size_bytes=size_bytes,
                checksum=checksum,
                signature=signature,
                remark=remark,
                info=info,
            )
            if then is not None:
                await then(conn)  # pyright: ignore[reportArgumentType] - a pool's proxy
    except asyncpg.UniqueViolationError as exc:
        raise name_taken(name) from exc
