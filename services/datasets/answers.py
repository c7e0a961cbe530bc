"""What the datasets service answers other services (NATS request/reply, services.common.requests).

`datasets_for_job`: may this user use these datasets for a training stage, an evaluation or GPTQ
calibration, and under which dataset_info.json keys. A name is public or one of the caller's own (theirs
wins over a public one of the same name); someone else's private dataset looks exactly like a missing one.
"""

from __future__ import annotations

import json

from services.common.contracts import DatasetsAsked, DatasetsForJob, Subjects
from services.common.errors import ApiError
from services.common.requests import Endpoint

from . import store
from .context import DatasetsContext
from .formats import stage_problem


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
    """Answer a `DatasetsAsked`: the keys (and what else the purpose needs), or why not."""
    if not asked.names:
        raise ApiError(422, "no_datasets", "name at least one dataset", asked.field)
    rows = await _rows(context.pool, asked)
    if asked.purpose == "train":
        return for_training(rows, asked.stage or "sft", asked.field)
    if asked.purpose == "eval":
        return for_evaluation(rows, asked.field)
    return for_calibration(rows, context.datasets.layout.root, asked.field)


ENDPOINTS = (
    Endpoint(
        name="datasets_for_job", subject=Subjects.DATASETS_FOR_JOB, request=DatasetsAsked, handler=datasets_for_job
    ),
)
