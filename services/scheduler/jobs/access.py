"""Which base models and datasets a caller may train on.

One function each, so the datasets and registry services can take the rule over later: a base model
is a preset or one of the caller's own successful outputs; a dataset is public or the caller's own
(the datasets service's table), and of a format the training stage can use.
"""

from __future__ import annotations

import json

import asyncpg
import msgspec

from services.common.errors import ApiError
from services.common.security import Principal
from services.datasets import store as datasets_store
from services.datasets.formats import stage_problem
from services.registry import rules
from services.registry import store as registry_store

from ..rendering import ModelPaths


class BaseModel(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    path: str
    parameter_count: int | None
    template: str
    hub: str | None = None  # where `path` is downloaded from (huggingface | modelscope); None: a local copy


async def usable_base_model(pool: asyncpg.Pool, principal: Principal, name: str,
                            prefer_hub: str = "huggingface") -> BaseModel:
    """The model `name` if the caller may train from it (the registry's rule); 422 on `base_model` otherwise.

    Someone else's model looks unknown; the name maps to the model's local copy, else its id on a hub
    (`prefer_hub` first when it is on both).
    """
    model = await rules.model_for_use(pool, principal.user_id, name, use="train", field="base_model")
    path, hub = model.loaded_from(prefer_hub)
    return BaseModel(name=model.name, path=path, parameter_count=model.parameter_count, template=model.template,
                     hub=hub)


class UsableModel(msgspec.Struct, kw_only=True, frozen=True):
    """A model an eval, export or deployment may use, with where its files are."""

    name: str
    kind: str
    paths: ModelPaths
    parameter_count: int | None


async def usable_model(pool: asyncpg.Pool, principal: Principal, name: str, use: rules.Use,
                       field: str = "model", prefer_hub: str = "huggingface") -> UsableModel:
    """The model `name` for `use` (the registry's rule); a LoRA adapter comes with the base it was trained on."""
    model = await rules.model_for_use(pool, principal.user_id, name, use=use, field=field)
    if model.kind != "lora":
        return UsableModel(name=model.name, kind=model.kind, parameter_count=model.parameter_count,
                           paths=model_paths(model, None, prefer_hub))
    base_row = await registry_store.get(pool, model.base_model_id) if model.base_model_id else None
    if base_row is None:
        raise ApiError(422, "base_model_missing", f"the base model of adapter {name!r} was deleted: "
                       "the adapter cannot be loaded without it", field)
    base = rules.ModelRef.from_row(base_row)
    return UsableModel(name=model.name, kind=model.kind, parameter_count=base.parameter_count,
                       paths=model_paths(model, base, prefer_hub))


def model_paths(model: rules.ModelRef, base: rules.ModelRef | None, prefer_hub: str) -> ModelPaths:
    """Where a job loads `model` from; a LoRA adapter (a local folder) is loaded on `base`, whose hub is the job's."""
    if base is None:
        path, hub = model.loaded_from(prefer_hub)
        return ModelPaths(model_path=path, template=model.template, hub=hub)
    path, hub = base.loaded_from(prefer_hub)
    return ModelPaths(model_path=path, adapter_path=model.location, template=model.template or base.template,
                      hub=hub)


async def _dataset_rows(pool: asyncpg.Pool, principal: Principal, names: list[str], field: str) -> list:
    """The caller's view of each name, in order; 422 naming `field[i]` when one is not public or theirs.

    A name is public or one of the caller's own (theirs wins over a public one of the same name);
    someone else's private dataset looks exactly like one that does not exist.
    """
    rows = {row["name"]: row for row in await datasets_store.usable_keys(pool, principal.user_id, names)}
    for index, name in enumerate(names):
        if name not in rows:
            raise ApiError(422, "unknown_dataset", f"dataset {name!r} is not public or yours", f"{field}[{index}]")
    return [rows[name] for name in names]


async def usable_datasets(pool: asyncpg.Pool, principal: Principal, names: list[str], stage: str) -> list[str]:
    """The dataset_info.json keys of `names` for the job's YAML; 422 naming `datasets[i]` when one is unknown
    or of a format the stage cannot use."""
    keys = []
    for index, row in enumerate(await _dataset_rows(pool, principal, names, "datasets")):
        problem = stage_problem(row["format"], json.loads(row["columns"]), stage)
        if problem:
            raise ApiError(422, "dataset_not_for_stage", f"dataset {row['name']!r}: {problem}", f"datasets[{index}]")
        keys.append(row["info_key"])
    return keys


async def eval_datasets(pool: asyncpg.Pool, principal: Principal, names: list[str]) -> tuple[list[str], str]:
    """The dataset_info keys of `names` and the stage that scores them: `pt` when every one is plain text,
    `sft` when none is; pairwise datasets and mixtures are refused."""
    rows = await _dataset_rows(pool, principal, names, "datasets")
    texts = [row["format"] == "text" for row in rows]
    for index, row in enumerate(rows):
        if row["format"] == "pairwise":
            raise ApiError(422, "dataset_not_for_stage", f"dataset {row['name']!r} is pairwise (chosen/rejected): "
                           "evaluate on instruction, conversation or plain-text data", f"datasets[{index}]")
        if texts[index] != texts[0]:
            raise ApiError(422, "dataset_not_for_stage", "evaluate plain-text and instruction datasets in separate "
                           "jobs: their losses are not comparable", f"datasets[{index}]")
    return [row["info_key"] for row in rows], "pt" if texts[0] else "sft"


async def calibration_file(pool: asyncpg.Pool, principal: Principal, name: str, data_dir) -> str:
    """The file of a GPTQ calibration dataset: one of the caller's (or public) plain-text datasets
    stored here, with a `text` column (what the engine's GPTQ calibration reads)."""
    field = "quantization.calibration_dataset"
    (row,) = await _dataset_rows(pool, principal, [name], field)
    info = json.loads(row["info"])
    if "text" not in json.loads(row["columns"]).values() or not info.get("file_name"):
        raise ApiError(422, "dataset_not_for_calibration", f"dataset {name!r} cannot calibrate GPTQ: it needs a "
                       "plain-text dataset stored here whose rows have a 'text' column", field)
    return str(data_dir / info["file_name"])
