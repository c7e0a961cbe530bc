"""The agent's side of the `objects` storage mode (services/common/storage.py): a job's inputs from the cache
(cache.py), its checkpoints and outputs into the store (uploads.py), its paths under this agent's own base."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

from nats.js import JetStreamContext

from services.common import storage
from services.common.contracts import AdapterRef, Buckets, JobDispatched, JobFile
from services.common.storage import CheckpointsTold, Fetching, JobStorage, Note, StorageError, StorageMode

from . import uploads
from .adapters import AdapterLoadFailed, Files, SharedFiles
from .cache import Cache


class ObjectsStorage:
    """Jobs' files through JetStream Object Store buckets; the agent's base holds only its own copies."""

    mode: StorageMode = "objects"

    def __init__(self, js: JetStreamContext, base: Path, cache: Cache):
        self.js, self.base, self.cache = js, base, cache
        self._published: set[str] = set()  # jobs whose outputs are in the store: their folder may go
        self._made: set[str] = set()  # jobs whose output folder did not exist before they ran here

    def localize(self, order: JobDispatched) -> JobDispatched:
        return storage.localize(order, self.base)

    async def prepare(self, order: JobDispatched, note: Note, progress: Fetching | None = None) -> None:
        if not await asyncio.to_thread(Path(order.output_dir).exists):
            self._made.add(order.job_id)  # its output folder is this run's own: removed once in the store
        for item in order.files:
            write_file(storage.relative_path(self.base, item.path), item)
        if order.inputs:
            await self.cache.bring(order.job_id, order.inputs, self.base, note, progress)

    async def follow(
        self, order: JobDispatched, note: Note, stopped: asyncio.Event, told: CheckpointsTold | None = None
    ) -> None:
        restored: dict[str, list[str]] = {}
        for item in order.inputs:  # the checkpoint a resumed attempt came with: in the bucket already
            job_id, _, rest = item.name.partition("/")
            checkpoint, _, relative = rest.partition("/")
            if item.bucket == Buckets.CHECKPOINTS and job_id == order.job_id and relative:
                restored.setdefault(checkpoint, []).append(relative)
        watch = uploads.Checkpoints(self.js, order.job_id, Path(order.output_dir), note, restored, told)
        await watch.follow(stopped)

    async def publish(self, order: JobDispatched, note: Note) -> None:
        count, size = await uploads.upload_outputs(self.js, order.job_id, Path(order.output_dir))
        note(f"outputs uploaded: {count} files, {size / uploads.MB:.1f} MB")
        self._published.add(order.job_id)

    async def publish_log(self, order: JobDispatched, log_file: Path) -> None:
        await uploads.upload_log(self.js, order.job_id, log_file)

    async def release(self, order: JobDispatched) -> None:
        """The job's inputs may go from the cache; its output folder goes once in the store (the buckets hold a
        job's files: the agent's disk holds only what runs)."""
        await self.cache.release(order.job_id)
        published, made = order.job_id in self._published, order.job_id in self._made
        self._published.discard(order.job_id)
        self._made.discard(order.job_id)
        # Never a folder that was there before, nor one in a base at the control plane's own path (it may be the
        # services' folder itself, where the registry finds outputs).
        if published and made and order.storage_base.rstrip("/") != str(self.base).rstrip("/"):
            output = Path(order.output_dir)
            if output.is_relative_to(self.base) and output != self.base:
                await asyncio.to_thread(shutil.rmtree, output, True)


def write_file(path: Path, item: JobFile) -> None:
    """A job's small file at `path`, whole or not at all (moved into place); with `merge`, its JSON object's keys
    set in the file's own."""
    text = item.text
    if item.merge:
        try:
            given = json.loads(text)
        except ValueError as exc:
            raise StorageError("bad_config", f"{item.path}: not JSON ({exc})") from exc
        if not isinstance(given, dict):
            raise StorageError("bad_config", f"{item.path}: not a JSON object")
        try:
            kept = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            kept = {}
        text = json.dumps({**(kept if isinstance(kept, dict) else {}), **given}, indent=2, ensure_ascii=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.writing-{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    temporary.chmod(0o644)
    os.replace(temporary, path)


class StoredAdapters:
    """`objects` mode: an adapter a deployment loads at run time comes from the store into the cache, as a job's
    inputs do, held (under the deployment's id and the adapter's name) while the engine holds it."""

    def __init__(self, files: ObjectsStorage, deployment_id: str, storage_base: str, note: Note):
        self.files, self.deployment_id, self.storage_base, self.note = files, deployment_id, storage_base, note

    async def bring(self, ref: AdapterRef) -> str:
        try:
            await self.files.cache.bring(self._holder(ref), ref.inputs, self.files.base, self.note)
        except StorageError as exc:
            raise AdapterLoadFailed(f"its files could not be fetched: {exc.message}") from exc
        return storage.rebase(ref.adapter_path, self.storage_base, str(self.files.base))

    async def release(self, ref: AdapterRef) -> None:
        await self.files.cache.release(self._holder(ref))

    def _holder(self, ref: AdapterRef) -> str:
        return f"{self.deployment_id}/adapter/{ref.name}"


def adapter_files(files: JobStorage, order: JobDispatched, note: Note) -> Files:
    """Where the adapters a deployment loads at run time come from, in the agent's storage mode."""
    if isinstance(files, ObjectsStorage):
        return StoredAdapters(files, order.job_id, order.storage_base, note)
    return SharedFiles()
