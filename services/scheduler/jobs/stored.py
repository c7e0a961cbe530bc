"""A finished job's files on the control plane in `objects` storage mode: its agent shares no folder with the
services and put its log and outputs into OUTPUTS when the job ended (services/agent/uploads.py); the first read
here brings them into the control plane's own folders, where every later read (and the shared-mode code) finds
them. In `shared` mode nothing is brought: the files are where the paths say."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from nats.js import JetStreamContext

from services.common import objects
from services.common.contracts import JOB_LOG_NAME, Buckets

from ..settings import SchedulerSettings


async def bring_log(js: JetStreamContext, settings: SchedulerSettings, job_id: str) -> Path:
    """The job's log file, brought from the store when it is not here yet."""
    path = settings.storage.logs / f"{job_id}.log"
    if settings.storage_mode == "objects" and not path.is_file():
        with contextlib.suppress(objects.ObjectMissing):
            await objects.fetch(js, Buckets.OUTPUTS, Buckets.job_log_object(job_id), path)
    return path


async def bring_outputs(js: JetStreamContext, settings: SchedulerSettings, job_id: str, folder: Path) -> None:
    """The files the job left, brought from the store into its output folder when that holds none yet."""
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
