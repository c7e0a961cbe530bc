"""A job's files on the control plane in `objects` storage mode, where its agent shares no folder with the services.

A running job's log is its lines in LOGS (services/common/logtext.py). A finished job's log and single output files
are answered straight out of the store (objects.read_range, through ranges.ranged_object): the first byte comes at
once whatever the size, a range is read from the chunks that hold it, and nothing is copied into the control
plane's folders. Only the zip of all its outputs brings them into its output folder first (bring_outputs): a zip is
laid out over files on disk (services/common/archive.py), and later zips find them there.

Object names are built from the job's id and a path that folders.relative_parts checked (no `.`, `..`, backslash or
NUL segment): always under `<job id>/`, in the bucket the contracts give that kind of file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

from litestar.response import Stream
from nats.js import JetStreamContext

from services.common import logtext, objects, ranges
from services.common.contracts import JOB_LOG_NAME, Buckets
from services.common.storage import CHECKPOINT

from ..settings import SchedulerSettings

LOG_MEDIA = "text/plain; charset=utf-8"


async def log_answer(
    js: JetStreamContext, job_id: str, finished: bool, headers: Mapping[str, str], attempts: int = 1
) -> Stream | None:
    """The job's log: a finished job's as its agent put it in OUTPUTS, with its sha256 as ETag; a running job's (or
    a finished one's whose agent never put it there: lost with its host) as its lines in LOGS so far, with an ETag
    that changes as it grows. None when there is neither.

    A finished job that ran more than one attempt is read from LOGS first: its last agent put only its own attempt
    into OUTPUTS (the agent before it was lost with its file), LOGS holds every attempt's lines. Once LOGS has let
    them go (LOGS' max age), the stored file, the last attempt's, is what remains."""
    extra = ranges.attachment(f"{job_id}.log")

    async def from_store() -> Stream | None:
        with contextlib.suppress(objects.ObjectMissing):
            return await ranges.ranged_object(
                headers, js, Buckets.OUTPUTS, Buckets.job_log_object(job_id), LOG_MEDIA, extra
            )
        return None

    if finished and attempts <= 1 and (answer := await from_store()) is not None:
        return answer
    stored = await logtext.measure(js, job_id)
    if stored is None:
        return await from_store() if finished else None
    return ranges.ranged(headers, stored.size, stored.etag, logtext.reader(js, stored), LOG_MEDIA, extra)


def output_object(job_id: str, parts: tuple[str, ...]) -> tuple[str, str] | None:
    """(bucket, object name) of a file of the job's output folder named by `parts` (folders.relative_parts): a
    checkpoint's file in CHECKPOINTS, any other in OUTPUTS; None for the log's own name (the log is not an output)."""
    if len(parts) > 1 and CHECKPOINT.match(parts[0]):
        return Buckets.CHECKPOINTS, Buckets.checkpoint_object(job_id, parts[0], "/".join(parts[1:]))
    if parts == (JOB_LOG_NAME,):
        return None
    return Buckets.OUTPUTS, Buckets.job_object(job_id, "/".join(parts))


async def output_file(
    js: JetStreamContext, job_id: str, parts: tuple[str, ...], headers: Mapping[str, str]
) -> Stream | None:
    """One file of the job's outputs (or of a checkpoint it stored), straight out of the store; None when the
    store has no such file."""
    found = output_object(job_id, parts)
    if found is None:
        return None
    bucket, name = found
    try:
        return await ranges.ranged_object(headers, js, bucket, name, extra=ranges.attachment(parts[-1]))
    except objects.ObjectMissing:
        return None


async def bring_outputs(js: JetStreamContext, settings: SchedulerSettings, job_id: str, folder: Path) -> None:
    """The files the job left, brought from the store into its output folder when that holds none yet (for its
    zip)."""
    if settings.storage_mode != "objects" or await asyncio.to_thread(_holds_files, folder):
        return
    prefix = Buckets.job_object(job_id, "")
    for item in await objects.list_objects(js, Buckets.OUTPUTS, prefix):
        target = _target(folder, item.name[len(prefix) :])
        if target is not None:
            await objects.fetch(js, Buckets.OUTPUTS, item.name, target)


def _holds_files(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def _target(folder: Path, relative: str) -> Path | None:
    """Where an output object goes in the folder; None for the log (it has its own place) and for a name that
    would leave the folder (never written)."""
    root = Path(os.path.abspath(folder))
    target = Path(os.path.normpath(root / relative))
    if relative == JOB_LOG_NAME or not target.is_relative_to(root) or target == root:
        return None
    return target
