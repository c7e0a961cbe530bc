"""Where a job's files are: the two storage modes (issue 15) behind one small interface.

`shared`: one folder (HOST_BASE_PATH) everywhere, the same path on every host; what a job reads is already there
and what it writes is seen by the services where the engine left it. Every step below is a no-op.

`objects`: an agent shares no folder with the services. Inputs come from JetStream Object Store buckets into the
agent's own base (services/agent/cache.py), its outputs and checkpoints go back into them
(services/agent/uploads.py); the dispatch's paths, rendered under the control plane's base, are read as
starting with the agent's (`localize`). Buckets and object names are the contracts' (`contracts.Buckets`).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import msgspec
import yaml
from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, NotFoundError

from . import objects
from .contracts import Buckets, FinishReason, JobDispatched, JobInput

StorageMode = Literal["shared", "objects"]
STORAGE_MODES: tuple[StorageMode, ...] = get_args(StorageMode)

Note = Callable[[str], None]  # a line for the job's log (the agent's "system" lines)
# How far a job's inputs are fetched: (the input it is on, bytes of all its inputs there, bytes of all its inputs).
Fetching = Callable[[str, int, int], Awaitable[None]]


class StorageError(Exception):
    """A job cannot run or cannot hand back its files: `reason` for JobFinished, `message` names the file."""

    def __init__(self, reason: FinishReason, message: str):
        super().__init__(message)
        self.reason: FinishReason = reason
        self.message = message


class CheckpointsTold(Protocol):
    """Who hears of a job's checkpoints while it runs: each one whole (its step, its folder), each one gone (the
    trainer deleted it: save_total_limit). The agent's JobCheckpointSaved / JobCheckpointRemoved."""

    async def saved(self, step: int, folder: Path) -> None: ...

    async def removed(self, step: int) -> None: ...


class JobStorage(Protocol):
    """What the agent's runner asks of the storage mode, for each job."""

    mode: StorageMode

    def localize(self, order: JobDispatched) -> JobDispatched:
        """The order as this agent runs it (its paths under this agent's base)."""
        ...

    async def prepare(self, order: JobDispatched, note: Note, progress: Fetching | None = None) -> None:
        """Make the job's inputs present at their paths (`progress` told how far that is); StorageError when one
        cannot be."""
        ...

    async def follow(
        self, order: JobDispatched, note: Note, stopped: asyncio.Event, told: CheckpointsTold | None = None
    ) -> None:
        """While the job runs: publish each checkpoint as it completes (and tell `told`); once `stopped` (its
        engine exited), the ones left, then return. `shared` mode publishes nothing: the agent watches the
        folder itself (services/agent/uploads.py)."""
        ...

    async def publish(self, order: JobDispatched, note: Note) -> None:
        """After the job's last stage: publish its outputs; StorageError when they cannot be."""
        ...

    async def publish_log(self, order: JobDispatched, log_file: Path) -> None:
        """Publish the job's log file, once closed; StorageError when it cannot be."""
        ...

    async def release(self, order: JobDispatched) -> None:
        """The job is over: what it held (cached inputs, their links) may go."""
        ...


class SharedStorage:
    """`shared` mode: the files are where the paths say, for the job and for the services."""

    mode: StorageMode = "shared"

    def localize(self, order: JobDispatched) -> JobDispatched:
        return order

    async def prepare(self, order: JobDispatched, note: Note, progress: Fetching | None = None) -> None:
        return None

    async def follow(
        self, order: JobDispatched, note: Note, stopped: asyncio.Event, told: CheckpointsTold | None = None
    ) -> None:
        return None

    async def publish(self, order: JobDispatched, note: Note) -> None:
        return None

    async def publish_log(self, order: JobDispatched, log_file: Path) -> None:
        return None

    async def release(self, order: JobDispatched) -> None:
        return None


# --- paths ----------------------------------------------------------------------------------------


# The folders of the storage base a dispatch may place a job's files in: never temp/ (other jobs' configs), logs/,
# hf-cache/ or the agent's cache.
JOB_FILE_FOLDERS = ("data", "models", "output", "evaluation", "checkpoints")


def relative_path(base: Path, relative: str) -> Path:
    """`relative` under `base`, refused (StorageError, bad_config) when it is absolute, climbs out with `..`, is
    not in one of JOB_FILE_FOLDERS, or reaches outside `base` through a link: a dispatch never places a file
    anywhere else."""
    parts = Path(relative).parts
    if not relative or os.path.isabs(relative) or ".." in parts or "\\" in relative or "\0" in relative:
        raise StorageError("bad_config", f"input path {relative!r} is not a plain path inside the storage base")
    if len(parts) < 2 or parts[0] not in JOB_FILE_FOLDERS:
        raise StorageError("bad_config", f"input path {relative!r} is not in {', '.join(JOB_FILE_FOLDERS)}")
    path = base / relative
    root = os.path.realpath(base)
    if not os.path.realpath(path.parent).startswith(root + os.sep) and os.path.realpath(path.parent) != root:
        raise StorageError("bad_config", f"input path {relative!r} leads outside the storage base")
    return path


def rebase(value: str, old: str, new: str) -> str:
    """`value` with its leading folder `old` read as `new` (only a whole leading folder: /a/b is not /a/bc)."""
    old = old.rstrip("/")
    if not old or not new:
        return value
    if value == old:
        return new
    if value.startswith(old + "/"):
        return new.rstrip("/") + value[len(old) :]
    return value


def rebase_tree(value: Any, old: str, new: str) -> Any:
    """Every string of a YAML document (mappings, lists) rebased."""
    if isinstance(value, str):
        return rebase(value, old, new)
    if isinstance(value, dict):
        return {key: rebase_tree(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [rebase_tree(item, old, new) for item in value]
    return value


def rebase_yaml(text: str, old: str, new: str) -> str:
    """A stage's YAML with every path under `old` under `new` instead; unchanged when nothing moves (or the text
    is not YAML: the engine then says what is wrong with it)."""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    moved = rebase_tree(config, old, new)
    return text if moved == config else yaml.safe_dump(moved, sort_keys=False, allow_unicode=True)


def localize(order: JobDispatched, base: Path) -> JobDispatched:
    """The order with the control plane's base (`storage_base`) read as `base` in its stages and output_dir."""
    old, new = order.storage_base, str(base)
    if not old or old.rstrip("/") == new.rstrip("/"):
        return order
    stages = tuple(
        msgspec.structs.replace(stage, config_yaml=rebase_yaml(stage.config_yaml, old, new)) for stage in order.stages
    )
    return msgspec.structs.replace(order, stages=stages, output_dir=rebase(order.output_dir, old, new))


# --- checkpoints in the store ---------------------------------------------------------------------

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"


async def stored_checkpoint(
    js: JetStreamContext, job_id: str, output: str, step: int | None = None
) -> tuple[int, tuple[JobInput, ...]] | None:
    """The newest whole checkpoint of a job in llmct-checkpoints (its trainer_state.json is there: the agent puts
    it last), or the one at `step`, as (step, inputs) placed at `<output>/checkpoint-<step>/<file>` (`output`: the
    job's output folder relative to the storage base, `output/<job id>`); None when the job has none (none whole at
    `step`). What a resumed attempt's dispatch carries (services/agent/uploads.py writes them)."""
    try:
        infos = await (await js.object_store(Buckets.CHECKPOINTS)).list(ignore_deletes=True)
    except (BucketNotFoundError, NotFoundError):
        return None
    found: dict[str, dict[str, api.ObjectInfo]] = {}
    for info in infos:
        name = info.name or ""
        if info.deleted or not name.startswith(f"{job_id}/"):
            continue
        checkpoint, _, relative = name[len(job_id) + 1 :].partition("/")
        if CHECKPOINT.match(checkpoint) and relative:
            found.setdefault(checkpoint, {})[relative] = info
    whole = [
        (int(checkpoint.split("-")[1]), checkpoint) for checkpoint, files in found.items() if TRAINER_STATE in files
    ]
    if step is not None:
        whole = [(at, checkpoint) for at, checkpoint in whole if at == step]
    if not whole:
        return None
    step, checkpoint = max(whole)
    inputs = tuple(
        JobInput(
            bucket=Buckets.CHECKPOINTS,
            name=Buckets.checkpoint_object(job_id, checkpoint, relative),
            sha256=objects.sha256_hex(info.digest),
            size=info.size or 0,
            path=f"{output.rstrip('/')}/{checkpoint}/{relative}",
        )
        for relative, info in sorted(found[checkpoint].items())
    )
    return step, inputs
