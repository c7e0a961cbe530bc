"""What a job brings from the object store in `objects` storage mode (issue 15): the files of its models and
datasets as the registry and the datasets service stored them (`contracts.JobInput`), and its own
dataset_info.json made of its datasets' entries (`contracts.JobFile`). Kept with the job (`jobs.fetches`) and sent
with each dispatch; empty in `shared` mode, where every host reads the one folder."""

from __future__ import annotations

import json
from collections.abc import Sequence

import msgspec

from services.common.contracts import Buckets, DatasetsForJob, JobFile, JobInput

from ..settings import SchedulerSettings

INFO_FILE = "dataset_info.json"


class Fetches(msgspec.Struct, kw_only=True, frozen=True):
    inputs: list[JobInput] = []
    files: list[JobFile] = []
    base: str = ""  # the control plane's storage base the job was rendered under; "" in `shared` mode


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
        files.append(JobFile(path=info, text=json.dumps(entries, ensure_ascii=False, sort_keys=True), merge=True))
    return Fetches(inputs=list(by_path.values()), files=files, base=base)


def to_column(value: Fetches) -> dict:
    return msgspec.to_builtins(value)


def from_column(value) -> Fetches:
    return msgspec.convert(value or {}, Fetches)


def resuming(needs: Fetches, checkpoint: list[JobInput] | None) -> Fetches:
    """The fetches with the checkpoint to resume from (an earlier one's files dropped); None: from the start."""
    kept = [item for item in needs.inputs if item.bucket != Buckets.CHECKPOINTS]
    return msgspec.structs.replace(needs, inputs=kept + list(checkpoint or ()))
