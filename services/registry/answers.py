"""What the registry answers other services (NATS request/reply, services.common.requests).

`model_for_use`: may this user use model X for train, eval, export or deploy (the rule of rules.py), and
where are its files. A LoRA adapter comes with the base it was trained on, whose hub is the job's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import msgspec

from services.common import lifecycle, readmodels, storage
from services.common.contracts import Buckets, JobInput, ModelForUse, ModelUseAsked, Subjects
from services.common.errors import ApiError
from services.common.inputs import InputStore, Wanted, files_under, stored_outputs
from services.common.requests import Endpoint

from . import rules, store


@dataclass(frozen=True, kw_only=True)
class RegistryContext(lifecycle.Context):
    """The shared context, and in `objects` storage mode where models' files go into the store for jobs."""

    inputs: InputStore | None = None


def registry_context(base: lifecycle.Context) -> RegistryContext:
    objects = base.settings.storage_mode == "objects"
    return base.extended(RegistryContext, inputs=InputStore(base.js, base.settings.storage.base) if objects else None)


def model_for_job(model: rules.ModelRef, base: rules.ModelRef | None, prefer_hub: str) -> ModelForUse:
    """Where a job loads `model` from; a LoRA adapter (a local folder) is loaded on `base`."""
    if base is None:
        path, hub = model.loaded_from(prefer_hub)
        return ModelForUse(
            name=model.name,
            kind=model.kind,
            model_path=path,
            template=model.template,
            hub=hub,
            parameter_count=model.parameter_count,
        )
    path, hub = base.loaded_from(prefer_hub)
    return ModelForUse(
        name=model.name,
        kind=model.kind,
        model_path=path,
        adapter_path=model.location,
        base=base.name,
        template=model.template or base.template,
        hub=hub,
        parameter_count=base.parameter_count,
    )


async def model_for_use(context: RegistryContext, asked: ModelUseAsked) -> ModelForUse:
    """Answer a `ModelUseAsked`: the model and its files, or why the caller may not use it; in `objects` storage
    mode with its files (and its base's), stored."""
    pool = context.pool
    model = await rules.model_for_use(pool, asked.user_id, asked.name, use=asked.use, field=asked.field)
    await _check_checkpoint_kept(pool, model.id, asked.name, asked.field)
    if model.kind != "lora":
        return await _with_inputs(context, model_for_job(model, None, asked.prefer_hub), [model], asked.field)
    base_row = await store.get(pool, model.base_model_id) if model.base_model_id else None
    if base_row is None:
        raise ApiError(
            422,
            "base_model_missing",
            f"the base model of adapter {asked.name!r} was deleted: the adapter cannot be loaded without it",
            asked.field,
        )
    base = rules.ModelRef.from_row(base_row)
    return await _with_inputs(context, model_for_job(model, base, asked.prefer_hub), [base, model], asked.field)


async def _check_checkpoint_kept(pool, model_id: str, name: str, field: str) -> None:
    """A model registered from a checkpoint is usable while its job keeps that checkpoint (the scheduler's record,
    in every storage mode): 409 once its trainer deleted it (save_total_limit), naming the ones it keeps."""
    async with pool.acquire() as conn:
        row = await store.get(conn, model_id)
        if row is None or not row["job_id"]:
            return
        job_id, step = row["job_id"], (row["details"] or {}).get("checkpoint_step")
        if step is None:
            return
        kept = await readmodels.kept_checkpoints(conn, job_id)
    if step not in kept:
        keeps = ", ".join(str(s) for s in kept) or "none"
        raise ApiError(
            409,
            "checkpoint_removed",
            f"model {name!r} is checkpoint {step} of job {job_id}, which its trainer has since deleted "
            f"(save_total_limit): register one the job keeps (steps: {keeps}) with POST /api/models/checkpoints",
            field,
        )


async def _with_inputs(
    context: RegistryContext, answer: ModelForUse, models: list[rules.ModelRef], field: str
) -> ModelForUse:
    if context.inputs is None:
        return answer
    found: list[JobInput] = []
    for model in models:
        found += await model_inputs(context, context.inputs, model, field)
    return msgspec.structs.replace(answer, inputs=found)


async def model_inputs(context: lifecycle.Context, inputs: InputStore, model: rules.ModelRef, field: str):
    """A model's local files as a job's inputs: a job's output from OUTPUTS (its agent put them there), any other
    local folder under the storage base into MODELS as `<model id>/<path>`; a model on a hub has none (its job
    downloads it)."""
    path, storage = Path(model.path or ""), context.settings.storage
    if not path.is_absolute() or ".." in path.parts:
        return []
    if path.is_relative_to(storage.output) and path != storage.output:
        job_id, *inside = path.relative_to(storage.output).parts
        if len(inside) == 1 and (step := checkpoint_step(inside[0])) is not None:
            return await checkpoint_inputs(context, job_id, step, model.name, field)
        stored = await stored_outputs(context.js, job_id, storage.output / job_id, storage.base)
        prefix = path.relative_to(storage.base).as_posix() + "/"
        return [item for item in stored if not inside or item.path.startswith(prefix)]
    if not path.is_relative_to(storage.base):
        return []
    files = await asyncio.to_thread(files_under, path)
    wanted = [Wanted(Buckets.MODELS, f, f"{model.id}/{f.relative_to(path).as_posix()}") for f in files]
    return await inputs.inputs(wanted, f"model {model.name!r}", field)


def checkpoint_step(folder: str) -> int | None:
    """The step of a checkpoint's folder name (`checkpoint-<step>`), None for any other name."""
    found = storage.CHECKPOINT.match(folder)
    return int(found.group(1)) if found else None


async def checkpoint_inputs(context: lifecycle.Context, job_id: str, step: int, name: str, field: str):
    """A checkpoint model's files: the checkpoint in llmct-checkpoints (never in OUTPUTS: the agent leaves
    checkpoints out of a job's outputs), placed where its job saved it."""
    output = context.settings.storage.output / job_id
    stored = await storage.stored_checkpoint(
        context.js, job_id, output.relative_to(context.settings.storage.base).as_posix(), step
    )
    if stored is None:
        message = f"the files of model {name!r} (checkpoint {step} of job {job_id}) are no longer in the store"
        raise ApiError(409, "checkpoint_not_stored", message, field)
    return list(stored[1])


ENDPOINTS = (
    Endpoint(name="model_for_use", subject=Subjects.MODEL_FOR_USE, request=ModelUseAsked, handler=model_for_use),
)
