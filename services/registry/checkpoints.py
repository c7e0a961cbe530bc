"""A kept checkpoint of the caller's own training job, registered as a model on demand (issue 18): the same kind as
the job's output (a LoRA adapter or a full model), on the same parent, linked to the job, at most one live model per
(job, step). Once registered it is one of the caller's models like any other: it deploys, and the gateway answers its
`ft:…:ckpt-step-<n>` name with it.

Its files: the checkpoint's folder, `<the job's output folder>/checkpoint-<step>`; in `objects` mode the checkpoint's
files in llmct-checkpoints, which the agent uploads as each is saved (services/agent/uploads.py) and a job that uses
the model brings along (answers.model_inputs)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import asyncpg
from nats.js import JetStreamContext

from services.common import readmodels, storage
from services.common.contracts import JobInput
from services.common.errors import ApiError, not_found
from services.common.security import Principal, new_id
from services.common.settings import Settings

from . import outputs, store
from .schemas import CheckpointRegister, Model
from .service import get_model, measure

log = logging.getLogger(__name__)


def checkpoint_path(output_path: str, step: int) -> str:
    """Where the trainer saved the checkpoint at `step` of a job whose output goes to `output_path`."""
    return str(Path(output_path) / f"checkpoint-{step}")


def steps_told(steps: list[int]) -> str:
    """The checkpoints a job keeps, as a refusal names them."""
    if not steps:
        return "it keeps none (yet)"
    return "it keeps step" + ("s " if len(steps) > 1 else " ") + ", ".join(str(s) for s in steps)


async def stored_files(
    js: JetStreamContext, settings: Settings, job_id: str, output_path: str, step: int
) -> tuple[JobInput, ...]:
    """`objects` mode: the checkpoint's files in the store; 409 while it is not whole there (or cannot be)."""
    base, output = settings.storage.base, Path(output_path)
    stored = None
    if output.is_absolute() and output.is_relative_to(base):
        stored = await storage.stored_checkpoint(js, job_id, output.relative_to(base).as_posix(), step)
    if stored is None:
        raise ApiError(
            409,
            "checkpoint_not_stored",
            f"the checkpoint at step {step} of job {job_id} is not (yet) in the store: try again shortly",
            "step",
        )
    return stored[1]


async def register_checkpoint(
    pool: asyncpg.Pool, js: JetStreamContext, settings: Settings, principal: Principal, data: CheckpointRegister
) -> tuple[Model, bool]:
    """The model of a kept checkpoint of the caller's training job, registered now unless it already is:
    (the model, whether it is new). 404 for a job that is not the caller's (or no job), and for a step it does not
    keep; 409 for a job that trains nothing, or whose parent model is gone."""
    job_id, step = data.job_id, data.step
    job = await readmodels.job_output(pool, job_id)
    if job is None or job.owner_id != principal.user_id:
        raise not_found("job")
    out = job.output
    if job.kind != "train" or out is None:
        message = f"job {job_id} is not a training job: only a training job's checkpoints are models"
        raise ApiError(409, "not_a_training_job", message, "job_id")
    steps = await readmodels.kept_checkpoints(pool, job_id)
    if step not in steps:
        message = f"job {job_id} keeps no checkpoint at step {step}: {steps_told(steps)}"
        raise ApiError(404, "checkpoint_not_found", message, "step")
    if known := await store.model_of_checkpoint(pool, job_id, step):
        return await get_model(pool, principal, known), False
    parent = await store.find_parent(pool, job.owner_id, out.parent_name, out.parent_location)
    if parent is None:
        message = f"the model job {job_id} trained from ({out.parent_name!r}) is gone: its checkpoints have no base"
        raise ApiError(409, "base_model_missing", message, "job_id")
    path = checkpoint_path(out.path, step)
    if settings.storage_mode == "objects":
        size, counted = sum(f.size for f in await stored_files(js, settings, job_id, out.path, step)), None
    else:
        size, counted = await asyncio.to_thread(measure, path)
    details: dict[str, Any] = {**out.details, "checkpoint_step": step}
    if out.kind == "lora" and counted:
        details["adapter_parameter_count"] = counted
    fields: dict[str, Any] = {
        "kind": out.kind,
        "source": out.source,
        "owner_id": job.owner_id,
        "base_model_id": parent["id"],
        "path": path,
        "size_bytes": size,
        "job_id": job_id,
        "details": details,
        "parameter_count": counted if out.kind == "full" and counted else parent["parameter_count"],
        "template": out.template or parent["template"],
        "datasets": list(out.datasets or parent["datasets"]),
        "checkpoint_step": step,
    }
    model_id = await _insert(pool, data, parent["name"], out.label, fields)
    return await get_model(pool, principal, model_id), True


async def _insert(pool: asyncpg.Pool, data: CheckpointRegister, parent: str, label: str, fields: dict) -> str:
    """Insert under the name asked for, else the default (`<parent>-<label>-step<n>-<job id suffix>`); the model
    another request registered meanwhile when there is one."""
    if data.name is not None and await store.preset_named(pool, data.name):
        raise ApiError(409, "name_taken", f"{data.name!r} is a preset's name: pick another", "name")
    label = f"{label}-step{data.step}"
    defaults = [outputs.default_name(parent, label, data.job_id, long=long) for long in (False, True)]
    names = [data.name] if data.name else defaults
    for name in names:
        if model_id := await store.insert_output(pool, model_id=new_id("mdl"), name=name, **fields):
            log.info("registered checkpoint %s of job %s as %s", data.step, data.job_id, name)
            return model_id
        if known := await store.model_of_checkpoint(pool, data.job_id, data.step):
            return known  # registered meanwhile by another request
    raise ApiError(409, "name_taken", f"you already have a model called {names[-1]!r}: pick another name", "name")
