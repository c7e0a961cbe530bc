"""What a job brings from the object store in `objects` storage mode (issue 15): the files of its models and
datasets as the registry and the datasets service stored them (`contracts.JobInput`), and its own
dataset_info.json made of its datasets' entries (`contracts.JobFile`). Kept with the job (`jobs.fetches`) and sent
with each dispatch; empty in `shared` mode, where every host reads the one folder."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import msgspec
from nats.js import JetStreamContext

from services.common import objects
from services.common.contracts import Buckets, DatasetsForJob, JobFile, JobInput

from ..settings import SchedulerSettings

INFO_FILE = "dataset_info.json"


class Fetches(msgspec.Struct, kw_only=True, frozen=True):
    inputs: list[JobInput] = []
    files: list[JobFile] = []
    base: str = ""  # the control plane's storage base the job was rendered under; "" in `shared` mode


CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
CHECKPOINT_DONE = "trainer_state.json"  # the trainer writes it last, and the agent puts it in the store last


def fetches(
    settings: SchedulerSettings, inputs: Sequence[Sequence[JobInput]], datasets: Sequence[DatasetsForJob] = ()
) -> Fetches:
    """A job's fetches from what its models' and datasets' owners answered (one input per path: an adapter and
    its base, two datasets of one folder, name a file once)."""
    if settings.storage_mode != "objects":
        return Fetches()
    base = str(settings.storage.base)
    by_path: dict[str, JobInput] = {}
    for item in [*(i for group in inputs for i in group), *(i for answer in datasets for i in answer.inputs)]:
        by_path.setdefault(item.path, item)
    entries = {key: entry for answer in datasets for key, entry in answer.entries.items()}
    files = []
    if entries:
        info = (settings.storage.data / INFO_FILE).relative_to(settings.storage.base).as_posix()
        files.append(JobFile(path=info, text=json.dumps(entries, ensure_ascii=False, sort_keys=True)))
    return Fetches(inputs=list(by_path.values()), files=files, base=base)


def to_column(value: Fetches) -> dict:
    return msgspec.to_builtins(value)


def from_column(value) -> Fetches:
    return msgspec.convert(value or {}, Fetches)


async def stored_checkpoint(js: JetStreamContext, job_id: str, output_dir: str, base: str):
    """The newest checkpoint of the job that is whole in CHECKPOINTS (its trainer_state.json is there): (its folder,
    its step, its files as inputs placed back in the job's output folder); None when there is none."""
    prefix = f"{job_id}/"
    groups: dict[str, list[tuple[str, objects.StoredObject]]] = {}
    for item in await objects.list_objects(js, Buckets.CHECKPOINTS, prefix):
        name, _, inside = item.name[len(prefix) :].partition("/")
        if CHECKPOINT.match(name) and inside:
            groups.setdefault(name, []).append((inside, item))
    whole = [
        (int(match.group(1)), name)
        for name, files in groups.items()
        if (match := CHECKPOINT.match(name)) and any(inside == CHECKPOINT_DONE for inside, _ in files)
    ]
    if not whole:
        return None
    step, name = max(whole)
    folder = Path(output_dir) / name
    inputs = [
        JobInput(
            bucket=Buckets.CHECKPOINTS,
            name=item.name,
            sha256=item.sha256,
            size=item.size,
            path=(folder / inside).relative_to(base).as_posix(),
        )
        for inside, item in groups[name]
    ]
    return folder, step, inputs


def resuming(needs: Fetches, checkpoint: list[JobInput] | None) -> Fetches:
    """The fetches with the checkpoint to resume from (an earlier one's files dropped); None: from the start."""
    kept = [item for item in needs.inputs if item.bucket != Buckets.CHECKPOINTS]
    return msgspec.structs.replace(needs, inputs=kept + list(checkpoint or ()))
