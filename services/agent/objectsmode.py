"""The agent's side of the `objects` storage mode (services/common/storage.py): a job's inputs from the cache
(cache.py), its checkpoints and outputs into the store (uploads.py), its paths under this agent's own base."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from nats.js import JetStreamContext

from services.common import storage
from services.common.contracts import Buckets, JobDispatched
from services.common.storage import Note, StorageMode

from . import uploads
from .cache import Cache
from .jobfiles import INFO_FILE


def merge_info(path: Path, text: str) -> None:
    """Add a job's dataset_info.json entries to the agent's (an entry's key names one stored dataset: a key already
    there is the same dataset), replaced in one step."""
    entries = json.loads(text)
    try:
        held = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        held = {}
    merged = {**(held if isinstance(held, dict) else {}), **entries}
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(merged, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(partial, path)


class ObjectsStorage:
    """Jobs' files through JetStream Object Store buckets; the agent's base holds only its own copies."""

    mode: StorageMode = "objects"

    def __init__(self, js: JetStreamContext, base: Path, cache: Cache):
        self.js, self.base, self.cache = js, base, cache

    def localize(self, order: JobDispatched) -> JobDispatched:
        return storage.localize(order, self.base)

    async def prepare(self, order: JobDispatched, note: Note) -> None:
        for item in order.files:
            path = storage.relative_path(self.base, item.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.name == INFO_FILE:  # jobs side by side share the data folder: their entries join
                merge_info(path, item.text)
            else:
                path.write_text(item.text, encoding="utf-8")
        if order.inputs:
            await self.cache.bring(order.job_id, order.inputs, self.base, note)

    async def follow(self, order: JobDispatched, note: Note, stopped: asyncio.Event) -> None:
        restored = {
            item.name.split("/")[1] for item in order.inputs if item.bucket == Buckets.CHECKPOINTS and "/" in item.name
        }
        await uploads.Checkpoints(self.js, order.job_id, Path(order.output_dir), note, restored).follow(stopped)

    async def publish(self, order: JobDispatched, note: Note) -> None:
        count, size = await uploads.upload_outputs(self.js, order.job_id, Path(order.output_dir))
        note(f"outputs uploaded: {count} files, {size / uploads.MB:.1f} MB")

    async def publish_log(self, order: JobDispatched, log_file: Path) -> None:
        await uploads.upload_log(self.js, order.job_id, log_file)

    async def release(self, order: JobDispatched) -> None:
        await self.cache.release(order.job_id)
