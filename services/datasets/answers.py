"""What the datasets service answers other services (NATS request/reply, services.common.requests).

`datasets_for_job`: may this user use these datasets for a training stage, an evaluation or GPTQ
calibration, and under which dataset_info.json keys. A name is public or one of the caller's own (theirs
wins over a public one of the same name); someone else's private dataset looks exactly like a missing one.

`result_file`: store a succeeded fine-tuning job's metrics CSV as a file of its owner (openai_results.py).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import msgspec

from services.common.contracts import Buckets, DatasetsAsked, DatasetsForJob, ResultFileAsked, Subjects
from services.common.errors import ApiError
from services.common.inputs import Wanted, files_under
from services.common.requests import Endpoint

from . import store
from .context import DatasetsContext
from .formats import stage_problem
from .openai_results import result_file


async def _rows(pool, asked: DatasetsAsked) -> list:
    """The caller's view of each name, in order; 422 naming `field[i]` when one is not public or theirs."""
    rows = {row["name"]: row for row in await store.usable_keys(pool, asked.user_id, asked.names)}
    for index, name in enumerate(asked.names):
        if name not in rows:
            raise ApiError(
                422, "unknown_dataset", f"dataset {name!r} is not public or yours", f"{asked.field}[{index}]"
            )
    return [rows[name] for name in asked.names]


def for_training(rows: list, stage: str, field: str) -> DatasetsForJob:
    """The keys, when every dataset is of a format the training stage can use."""
    for index, row in enumerate(rows):
        problem = stage_problem(row["format"], json.loads(row["columns"]), stage)
        if problem:
            raise ApiError(422, "dataset_not_for_stage", f"dataset {row['name']!r}: {problem}", f"{field}[{index}]")
    return DatasetsForJob(keys=[row["info_key"] for row in rows])


def for_evaluation(rows: list, field: str) -> DatasetsForJob:
    """The keys and the stage that scores them: `pt` when every one is plain text, `sft` when none is;
    pairwise datasets and mixtures are refused."""
    texts = [row["format"] == "text" for row in rows]
    for index, row in enumerate(rows):
        if row["format"] == "pairwise":
            raise ApiError(
                422,
                "dataset_not_for_stage",
                f"dataset {row['name']!r} is pairwise (chosen/rejected): "
                "evaluate on instruction, conversation or plain-text data",
                f"{field}[{index}]",
            )
        if texts[index] != texts[0]:
            raise ApiError(
                422,
                "dataset_not_for_stage",
                "evaluate plain-text and instruction datasets in separate jobs: their losses are not comparable",
                f"{field}[{index}]",
            )
    return DatasetsForJob(keys=[row["info_key"] for row in rows], eval_stage="pt" if texts[0] else "sft")


def for_calibration(rows: list, data_dir, field: str) -> DatasetsForJob:
    """The file of a GPTQ calibration dataset: a plain-text dataset stored here whose rows have a `text` column
    (what the engine's GPTQ calibration reads)."""
    files = []
    for row in rows:
        info = json.loads(row["info"])
        if "text" not in json.loads(row["columns"]).values() or not info.get("file_name"):
            raise ApiError(
                422,
                "dataset_not_for_calibration",
                f"dataset {row['name']!r} cannot calibrate GPTQ: it "
                "needs a plain-text dataset stored here whose rows have a 'text' column",
                field,
            )
        files.append(str(data_dir / info["file_name"]))
    return DatasetsForJob(keys=[row["info_key"] for row in rows], files=files)


async def datasets_for_job(context: DatasetsContext, asked: DatasetsAsked) -> DatasetsForJob:
    """Answer a `DatasetsAsked`: the keys (and what else the purpose needs), or why not; in `objects` storage mode
    with the datasets' files, stored in their bucket, and their dataset_info.json entries."""
    if not asked.names:
        raise ApiError(422, "no_datasets", "name at least one dataset", asked.field)
    rows = await _rows(context.pool, asked)
    data_dir = context.datasets.layout.root
    if asked.purpose == "train":
        answer = for_training(rows, asked.stage or "sft", asked.field)
    elif asked.purpose == "eval":
        answer = for_evaluation(rows, asked.field)
    else:
        answer = for_calibration(rows, data_dir, asked.field)
    if context.inputs is None:
        return answer
    entries = {row["info_key"]: json.loads(row["info"]) for row in rows}
    paths = await asyncio.to_thread(lambda: [p for entry in entries.values() for p in entry_files(data_dir, entry)])
    wanted = [Wanted(Buckets.DATASETS, path) for path in paths]
    what = "dataset " + ", ".join(repr(row["name"]) for row in rows)
    inputs = await context.inputs.inputs(wanted, what, asked.field)
    return msgspec.structs.replace(answer, inputs=inputs, entries=entries)


def entry_files(data_dir: Path, entry: dict) -> list[Path]:
    """The files of the data folder a dataset_info.json entry reads (`file_name`: a file or a folder of files);
    nothing outside the data folder. An entry on a hub has none: its job downloads it."""
    name = entry.get("file_name")
    if not isinstance(name, str) or not name:
        return []
    path = Path(os.path.normpath(data_dir / name))
    if not path.is_relative_to(data_dir) or path == data_dir:
        return []
    return files_under(path)


ENDPOINTS = (
    Endpoint(
        name="datasets_for_job", subject=Subjects.DATASETS_FOR_JOB, request=DatasetsAsked, handler=datasets_for_job
    ),
    Endpoint(name="result_file", subject=Subjects.RESULT_FILE, request=ResultFileAsked, handler=result_file),
)
