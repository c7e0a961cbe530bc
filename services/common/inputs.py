"""A job's inputs as the services that own them hand them to the scheduler in `objects` storage mode (issue 15).

The datasets service (dataset files) and the registry (local models, the files a job left) answer with each file as a
`contracts.JobInput`: its object in a bucket, its sha256 and size, and where the job reads it (relative to the
storage base). A file goes into its bucket the first time a job needs it, or again when its bytes changed; the
owner's answer waits `wait_s` for that, and when a big file takes longer the caller gets a 503 that says so while the
copy goes on (the next submit finds it stored). A file is hashed once per (size, mtime) in a process, or not at all
when the process wrote it and told its hash (`remember`: an upload streamed into the store as it arrived, so its
first job finds it stored and neither hashes nor copies it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nats.js import JetStreamContext

from . import objects
from .contracts import JOB_LOG_NAME, Buckets, JobInput
from .errors import ApiError

WAIT_S = 3.0  # how long an answer waits for files going into the store (answers must come within 5 s)


def files_under(path: Path) -> list[Path]:
    """The regular files a path names: itself, or every file below a folder (links are not followed)."""
    if path.is_symlink():
        return []
    if path.is_file():
        return [path]
    found: list[Path] = []
    for folder, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not (Path(folder) / d).is_symlink())
        paths = (Path(folder) / name for name in sorted(names))
        found += [p for p in paths if p.is_file() and not p.is_symlink()]
    return found


@dataclass(frozen=True)
class Wanted:
    """One file a job reads: `name` in `bucket` (None: by its content, `Buckets.dataset_object`)."""

    bucket: str
    path: Path
    name: str | None = None


@dataclass
class InputStore:
    """Puts the files of jobs' inputs into their buckets, once; shared by one service's answers."""

    js: JetStreamContext
    base: Path  # the control plane's storage base: a JobInput's path is relative to it
    wait_s: float = WAIT_S
    _hashes: dict[tuple[str, int, int], str] = field(default_factory=dict)
    _copies: dict[tuple[str, str], asyncio.Task[JobInput]] = field(default_factory=dict)
    _sizes: dict[asyncio.Task[JobInput], int] = field(default_factory=dict)

    async def inputs(self, wanted: Iterable[Wanted], what: str, field_name: str | None = None) -> list[JobInput]:
        """Each file as a JobInput once it is stored; 503 naming `what` when copies are still under way after
        `wait_s`, 422 when a file is gone."""
        tasks = [self._copy(item) for item in wanted]
        if not tasks:
            return []
        done, pending = await asyncio.wait(tasks, timeout=self.wait_s)
        if pending:
            size = sum(self._sizes.get(task, 0) for task in pending)
            raise ApiError(
                503,
                "inputs_being_stored",
                f"{what}: {len(pending)} file(s), {size / 1e6:.0f} MB, are being copied into the object store; "
                "submit again in a moment",
                field_name,
            )
        for task in done:
            if isinstance(task.exception(), FileNotFoundError):
                raise ApiError(422, "input_gone", f"{what}: a file is gone ({task.exception()})", field_name)
        return [task.result() for task in tasks]

    def _copy(self, item: Wanted) -> asyncio.Task[JobInput]:
        key = (item.bucket, str(item.path))
        task = self._copies.get(key)
        if task is None or task.done():
            task = asyncio.create_task(self._stored(item))
            self._copies[key] = task
            self._sizes[task] = item.path.stat().st_size if item.path.exists() else 0
            task.add_done_callback(lambda done, k=key: self._forget(k, done))
        return task

    def _forget(self, key: tuple[str, str], task: asyncio.Task[JobInput]) -> None:
        self._sizes.pop(task, None)
        if self._copies.get(key) is task:
            del self._copies[key]

    async def _stored(self, item: Wanted) -> JobInput:
        sha256 = await self.sha256(item.path)
        name = item.name or Buckets.dataset_object(sha256)
        with contextlib.suppress(objects.ObjectMissing):
            found = await objects.describe(self.js, item.bucket, name)
            if found.sha256 == sha256:
                return self._input(item, name, found)
        return self._input(item, name, await objects.put_file(self.js, item.bucket, name, item.path))

    def _input(self, item: Wanted, name: str, stored: objects.StoredObject) -> JobInput:
        return JobInput(
            bucket=item.bucket,
            name=name,
            sha256=stored.sha256,
            size=stored.size,
            path=item.path.relative_to(self.base).as_posix(),
        )

    def remember(self, path: Path, sha256: str) -> None:
        """The hex sha256 of a file this process has just written (as it is now: its size and mtime)."""
        stat = os.stat(path)
        self._hashes[(str(path), stat.st_size, stat.st_mtime_ns)] = sha256

    async def sha256(self, path: Path) -> str:
        stat = os.stat(path)
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = await asyncio.to_thread(objects.file_sha256, path)
        return self._hashes[key]


async def stored_outputs(js: JetStreamContext, job_id: str, output_dir: Path, base: Path) -> list[JobInput]:
    """The files a job left in OUTPUTS (the agent put them there when it ended), placed back in its output folder:
    what a later job that loads them (an adapter, a merged model) reads. Its log is not one of them."""
    prefix = Buckets.job_object(job_id, "")
    found = []
    for info in await objects.list_objects(js, Buckets.OUTPUTS, prefix):
        relative = info.name[len(prefix) :]
        if relative == JOB_LOG_NAME:
            continue
        found.append(
            JobInput(
                bucket=Buckets.OUTPUTS,
                name=info.name,
                sha256=info.sha256,
                size=info.size,
                path=(output_dir / relative).relative_to(base).as_posix(),
            )
        )
    return found
