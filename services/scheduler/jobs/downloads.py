"""What the downloads of a job's (or a deployment's) log and output files answer, in either storage mode: in `shared`
mode the files where the paths say, in `objects` mode the store and LOGS (stored.py). Every answer is streamed and
resumable (services/common/ranges.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from litestar.response import Stream
from nats.js import JetStreamContext

from services.common import folders, ranges
from services.common.contracts import TERMINAL_JOB_STATES
from services.common.errors import ApiError

from ..settings import SchedulerSettings
from . import stored
from .store import JobRow


def no_log() -> ApiError:
    return ApiError(404, "no_log", "nothing has been logged yet")


def log_download(path: Path, name: str, headers: Mapping[str, str]) -> Stream:
    """A log file as it is now, whole or the range asked (services/common/ranges.py): a running job keeps
    appending, so only the bytes there at the start are sent, and its ETag changes as it grows (a resumed download
    of a log that grew starts over)."""
    opener = ranges.path_opener(path)
    st = ranges.stat_opened(opener)
    if st is None:
        raise no_log()
    return ranges.ranged(
        headers,
        st.st_size,
        ranges.file_etag(st),
        ranges.fd_reader(opener, st),
        media_type=stored.LOG_MEDIA,
        extra=ranges.attachment(f"{name}.log"),
    )


async def job_log(
    js: JetStreamContext,
    settings: SchedulerSettings,
    job_id: str,
    state: str,
    headers: Mapping[str, str],
    attempts: int = 1,
) -> Stream:
    """The log of a job (or deployment) in `state` after `attempts` attempts, so far when it still runs; 404 no_log
    when there is none."""
    if settings.storage_mode != "objects":
        return log_download(settings.storage.logs / f"{job_id}.log", job_id, headers)
    answer = await stored.log_answer(js, job_id, state in TERMINAL_JOB_STATES, headers, attempts)
    if answer is None:
        raise no_log()
    return answer


async def output_file(
    js: JetStreamContext, settings: SchedulerSettings, job: JobRow, path: str, headers: Mapping[str, str]
) -> Stream:
    """One file of the job's outputs, `path` inside its output folder; 400 for a path that would leave it, 404
    no_such_artifact when there is no such file (a link counts as none)."""
    parts = folders.relative_parts(path)
    missing = ApiError(404, "no_such_artifact", f"the job's outputs hold no file {'/'.join(parts)}")
    if settings.storage_mode == "objects":
        answer = await stored.output_file(js, job.id, parts, headers)
        if answer is None:
            raise missing
        return answer
    folder = output_folder(job)
    found = await asyncio.to_thread(folders.stat_own_file, folder, parts) if folder else None
    if folder is None or found is None:
        raise missing
    return ranges.ranged(
        headers,
        found.st_size,
        ranges.file_etag(found),
        ranges.fd_reader(lambda: folders.open_own_file(folder, parts), found),
        extra=ranges.attachment(parts[-1]),
    )


async def finished_outputs(js: JetStreamContext, settings: SchedulerSettings, job: JobRow) -> Path | None:
    """The job's output folder; a finished job's outputs brought from the store first in `objects` mode (its zip
    is laid out over files on disk)."""
    folder = output_folder(job)
    if folder is not None and job.state in TERMINAL_JOB_STATES:
        await stored.bring_outputs(js, settings, job.id, folder)
    return folder


def output_folder(job: JobRow) -> Path | None:
    """Where the job writes its outputs (None before it has one)."""
    where = job.output_dir or job.config.get("output_dir")
    return Path(where) if where else None
