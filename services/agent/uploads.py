"""A job's checkpoints as they are saved (both storage modes), and its outputs into the store (`objects` mode).

Checkpoints: the trainer writes `checkpoint-<step>` whole before it goes on (transformers' `_save_checkpoint`: the
model, optimizer, scheduler and RNG states, then `trainer_state.json`; LLaMA-Factory's on_save callbacks then add
the tokenizer files). A folder is taken as complete when its `trainer_state.json` reads as JSON and nothing in it
changed for SETTLE_S (or the engine exited); its files go to CHECKPOINTS with `trainer_state.json` last, so that
file's presence in the bucket says the checkpoint is whole (the same rule as on disk, scheduler/jobs/recovery.py).
One the trainer deletes meanwhile (save_total_limit) is skipped. In `shared` mode nothing is uploaded: the folder
is where the services and a resume read it. In both modes each checkpoint, once whole (and in `objects` mode once in
the store), is told to the scheduler (JobCheckpointSaved, through `told`), and one the trainer deleted is told gone.

Outputs: once the job's last stage ended, every file of its output folder but the checkpoints goes to OUTPUTS as
`<job id>/<path>`, and its log file as `<job id>/job.log`. Only regular files: a link the job left in its folder
is never followed (it could point at the agent's own files).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import stat
import time
from pathlib import Path

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.common import objects
from services.common.contracts import JOB_LOG_NAME, Buckets
from services.common.storage import CheckpointsTold, Note, StorageError

log = logging.getLogger(__name__)

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"
SETTLE_S = 2.0
POLL_S = 1.0
MB = 1024 * 1024


def regular_files(folder: Path) -> dict[str, tuple[int, int]]:
    """{path relative to `folder`: (size, mtime_ns)} of its regular files, links not followed."""
    found: dict[str, tuple[int, int]] = {}
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in files:
            path = Path(root, name)
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode):
                found[path.relative_to(folder).as_posix()] = (info.st_size, info.st_mtime_ns)
        dirs.sort()
    return found


async def put(js: JetStreamContext, bucket: str, name: str, path: Path, inside: Path) -> objects.StoredObject:
    """One file into the store, read only when it really is a regular file inside the folder `inside`.
    FileNotFoundError when it is gone or is no such file; StorageError upload_failed when the store refuses it."""
    fd = open_inside(path, inside)
    try:
        return await objects.put_file(js, bucket, name, Path(f"/proc/self/fd/{fd}"))
    except Exception as exc:
        raise StorageError("upload_failed", f"{path.name} could not be put in {bucket}: {exc}") from exc
    finally:
        os.close(fd)


def open_inside(path: Path, inside: Path) -> int:
    """A descriptor of `path`, a regular file inside `inside`. The job may swap a file for a link to the agent's
    own files while the agent reads its folder: the file is opened without following a link, and its real place
    is checked on the open file (a parent folder swapped for a link shows there)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise FileNotFoundError(f"{path} is gone or is a link") from exc
    real, root = os.readlink(f"/proc/self/fd/{fd}"), os.path.realpath(inside)
    if not real.startswith(root + os.sep) or not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FileNotFoundError(f"{path} is not a file inside {inside}")
    return fd


class Checkpoints:
    """Watches a job's output folder for checkpoints (see the module's docstring): with `js`, uploads each as it
    completes (`objects` mode); without, only tells of it (`shared` mode)."""

    def __init__(
        self,
        js: JetStreamContext | None,
        job_id: str,
        output_dir: Path,
        note: Note,
        restored: dict[str, list[str]] | None = None,
        told: CheckpointsTold | None = None,
    ):
        self.js, self.job_id, self.output_dir, self.note, self.told = js, job_id, output_dir, note, told
        # checkpoint -> its files in the bucket: uploaded here, or restored from it (a resumed attempt's own); in
        # shared mode, the checkpoints found whole (no files kept)
        self.stored: dict[str, list[str]] = {name: list(files) for name, files in (restored or {}).items()}
        self.done: set[str] = set(self.stored)  # not to upload (again)

    async def follow(self, stopped: asyncio.Event) -> None:
        """Upload each checkpoint once complete, until `stopped`; then the ones left, the engine being gone."""
        while not stopped.is_set():
            await self.sweep(final=False)
            try:
                await asyncio.wait_for(stopped.wait(), POLL_S)
            except TimeoutError:
                pass
        await self.sweep(final=True)

    def waiting(self) -> list[str]:
        """Checkpoint folders with a trainer state, not uploaded, oldest first."""
        if not self.output_dir.is_dir():
            return []
        found = [
            (int(m.group(1)), path.name)
            for path in self.output_dir.iterdir()
            if (m := CHECKPOINT.match(path.name)) and path.name not in self.done and not path.is_symlink()
        ]
        return [name for _, name in sorted(found)]

    async def sweep(self, final: bool) -> None:
        for name in self.waiting():
            folder = self.output_dir / name
            if not complete(folder, 0.0 if final else SETTLE_S):
                continue
            if self.js is None:
                self.done.add(name)
                self.stored[name] = []
                await self._tell_saved(name, folder)
                continue
            try:
                count, size = await self.upload(name, folder)
            except FileNotFoundError:
                self.note(f"{name} was removed before it was uploaded")
                self.done.add(name)
                continue
            except StorageError as exc:
                self.note(f"{name} not uploaded ({exc.message}); tried again later")
                if final:
                    self.done.add(name)
                continue
            self.done.add(name)
            self.note(f"{name} uploaded: {count} files, {size / MB:.1f} MB")
            await self._tell_saved(name, folder)
        await self.forget_rotated()

    async def _tell_saved(self, name: str, folder: Path) -> None:
        if self.told is not None and (m := CHECKPOINT.match(name)):
            await self.told.saved(int(m.group(1)), folder)

    async def _tell_removed(self, name: str) -> None:
        if self.told is not None and (m := CHECKPOINT.match(name)):
            await self.told.removed(int(m.group(1)))

    async def forget_rotated(self) -> None:
        """A checkpoint the trainer deleted (save_total_limit) goes from the bucket too, once a newer one is there:
        the bucket keeps what the output folder keeps, never less than the newest."""
        steps = {name: int(m.group(1)) for name in self.stored if (m := CHECKPOINT.match(name))}
        if not steps:
            return
        newest = max(steps.values())
        for name, step in steps.items():
            if step == newest or await asyncio.to_thread((self.output_dir / name).exists):
                continue
            if self.js is None:  # shared mode: the folder was the checkpoint
                del self.stored[name]
                await self._tell_removed(name)
                continue
            try:
                bucket = await self.js.object_store(Buckets.CHECKPOINTS)
                files = sorted(self.stored[name], key=lambda relative: relative != STATE_FILE)  # no longer whole first
                for relative in files:
                    with contextlib.suppress(NotFoundError):
                        await bucket.delete(self._object(name, relative))
            except (NatsError, OSError, TimeoutError) as exc:
                self.note(f"{name}, deleted by the trainer, could not be removed from the store: {exc}")
                continue
            del self.stored[name]
            self.note(f"{name}, deleted by the trainer, removed from the store")
            await self._tell_removed(name)

    async def upload(self, name: str, folder: Path) -> tuple[int, int]:
        """Every file of the folder, then files that changed meanwhile, then its trainer state."""
        assert self.js is not None
        sent: dict[str, tuple[int, int]] = {}
        for _ in range(5):
            now = {k: v for k, v in regular_files(folder).items() if k != STATE_FILE}
            changed = [k for k, v in now.items() if sent.get(k) != v]
            if not changed:
                break
            for relative in changed:
                await put(self.js, Buckets.CHECKPOINTS, self._object(name, relative), folder / relative, folder)
                sent[relative] = now[relative]
        await put(self.js, Buckets.CHECKPOINTS, self._object(name, STATE_FILE), folder / STATE_FILE, folder)
        self.stored[name] = [*sent, STATE_FILE]
        total = sum(size for size, _ in sent.values()) + (folder / STATE_FILE).stat().st_size
        return len(sent) + 1, total

    def _object(self, checkpoint: str, relative: str) -> str:
        return Buckets.checkpoint_object(self.job_id, checkpoint, relative)


def complete(folder: Path, settle_s: float) -> bool:
    """Whether a checkpoint folder is whole: its trainer state reads as JSON, nothing changed for `settle_s`."""
    try:
        json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    files = regular_files(folder)
    newest = max((mtime for _, mtime in files.values()), default=0)
    return time.time_ns() - newest >= settle_s * 1e9


def saved_metrics(folder: Path, step: int) -> tuple[float | None, float | None, float | None]:
    """(train loss, validation loss, epoch) a checkpoint's trainer state logged up to its step; None where none."""
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        history = [e for e in state.get("log_history") or [] if isinstance(e, dict) and (e.get("step") or 0) <= step]
        epoch = state.get("epoch")
    except (OSError, ValueError, AttributeError):
        return None, None, None

    def last(key: str) -> float | None:
        found = [e[key] for e in history if isinstance(e.get(key), int | float) and not isinstance(e[key], bool)]
        return float(found[-1]) if found else None

    return last("loss"), last("eval_loss"), float(epoch) if isinstance(epoch, int | float) else None


async def upload_outputs(js: JetStreamContext, job_id: str, output_dir: Path) -> tuple[int, int]:
    """The output folder's files but its checkpoints, to OUTPUTS under the job id; (files, bytes)."""
    count = size = 0
    for relative, (length, _) in sorted(regular_files(output_dir).items()):
        top = relative.split("/", 1)[0]
        if CHECKPOINT.match(top) and "/" in relative or relative == JOB_LOG_NAME:
            continue
        try:
            await put(js, Buckets.OUTPUTS, Buckets.job_object(job_id, relative), output_dir / relative, output_dir)
        except FileNotFoundError:
            continue  # gone since the folder was read
        count, size = count + 1, size + length
    return count, size


async def upload_log(js: JetStreamContext, job_id: str, log_file: Path) -> None:
    """The job's log file, to OUTPUTS as `<job id>/job.log`."""
    with contextlib.suppress(FileNotFoundError):
        await put(js, Buckets.OUTPUTS, Buckets.job_log_object(job_id), log_file, log_file.parent)
