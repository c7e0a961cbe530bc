"""Which models and datasets a caller may use for a job: asked of the services that own them.

The registry decides models (`model_for_use`), the datasets service decides datasets (`datasets_for_job`),
over NATS request/reply (services.common.requests); their refusals come back as the caller's 422 naming the
field, and a service that does not answer is a 503 with nothing stored.
"""

from __future__ import annotations

import msgspec

from services.common.contracts import (
    DatasetsAsked,
    DatasetsForJob,
    JobInput,
    ModelForUse,
    ModelUse,
    ModelUseAsked,
    Subjects,
)
from services.common.requests import ask
from services.common.security import Principal

from ..rendering import ModelPaths


class BaseModel(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    path: str
    parameter_count: int | None
    template: str
    hub: str | None = None  # where `path` is downloaded from (huggingface | modelscope); None: a local copy
    inputs: list[JobInput] = []  # `objects` storage mode: its files in the store


class UsableModel(msgspec.Struct, kw_only=True, frozen=True):
    """A model an eval, export or deployment may use, with where its files are."""

    name: str
    kind: str
    paths: ModelPaths
    parameter_count: int | None
    inputs: list[JobInput] = []  # `objects` storage mode: its files (and its base's) in the store


async def _model(nc, principal: Principal, name: str, use: ModelUse, field: str, prefer_hub: str) -> ModelForUse:
    asked = ModelUseAsked(user_id=principal.user_id, name=name, use=use, field=field, prefer_hub=prefer_hub)
    return await ask(nc, Subjects.MODEL_FOR_USE, asked, ModelForUse, owner="registry")


async def usable_base_model(nc, principal: Principal, name: str, prefer_hub: str = "huggingface") -> BaseModel:
    """The model `name` if the caller may train from it; 422 on `base_model` otherwise."""
    model = await _model(nc, principal, name, "train", "base_model", prefer_hub)
    return BaseModel(
        name=model.name,
        path=model.model_path,
        parameter_count=model.parameter_count,
        template=model.template,
        hub=model.hub,
        inputs=model.inputs,
    )


async def usable_model(
    nc, principal: Principal, name: str, use: ModelUse, field: str = "model", prefer_hub: str = "huggingface"
) -> UsableModel:
    """The model `name` for `use`; a LoRA adapter comes with the base it was trained on."""
    model = await _model(nc, principal, name, use, field, prefer_hub)
    paths = ModelPaths(
        model_path=model.model_path, adapter_path=model.adapter_path, template=model.template, hub=model.hub
    )
    return UsableModel(
        name=model.name, kind=model.kind, parameter_count=model.parameter_count, paths=paths, inputs=model.inputs
    )


async def _datasets(nc, asked: DatasetsAsked) -> DatasetsForJob:
    return await ask(nc, Subjects.DATASETS_FOR_JOB, asked, DatasetsForJob, owner="datasets")


async def usable_datasets(
    nc, principal: Principal, names: list[str], stage: str, field: str = "datasets"
) -> DatasetsForJob:
    """The dataset_info.json keys of `names` for a training stage (and, in `objects` mode, their files); 422 naming
    `<field>[i]` when one is unknown or of a format the stage cannot use."""
    asked = DatasetsAsked(user_id=principal.user_id, names=names, purpose="train", stage=stage, field=field)
    return await _datasets(nc, asked)


async def eval_datasets(nc, principal: Principal, names: list[str]) -> DatasetsForJob:
    """The dataset_info keys of `names` and the stage that scores them (pt or sft): `eval_stage`."""
    return await _datasets(nc, DatasetsAsked(user_id=principal.user_id, names=names, purpose="eval"))


async def calibration_file(nc, principal: Principal, name: str) -> DatasetsForJob:
    """The file of a GPTQ calibration dataset (a plain-text dataset with a `text` column): `files[0]`."""
    asked = DatasetsAsked(
        user_id=principal.user_id, names=[name], purpose="calibration", field="quantization.calibration_dataset"
    )
    return await _datasets(nc, asked)
