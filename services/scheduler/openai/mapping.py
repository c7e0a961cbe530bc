"""OpenAI's fine-tuning job onto our training job and back: the request /api/jobs takes, the autos we chose, the
status a job's state reads as, and the names of what it made. Pure functions: no I/O."""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any, Literal

import msgspec

from services.common.contracts import JobState
from services.common.errors import ApiError

from ..jobs.schemas import Tracking, TrainRequest, WandbTracking
from .schemas import FineTuningJobCreate, Hyperparameters, Integration

JOB_PREFIX = "ftjob-"
CHECKPOINT_PREFIX = "ftckpt-"
EVENT_PREFIX = "ftevent-"

# What "auto" means here (docs/openai.md): OpenAI sizes them from the dataset; we do not read it at submit.
AUTO_EPOCHS = 3
AUTO_BATCH_SIZE = 4
AUTO_MULTIPLIER = 1.0
AUTO_BETA = 0.1  # LLaMA-Factory's pref_beta default
BASE_LEARNING_RATE = 1e-4  # × learning_rate_multiplier: our form's default for LoRA
MAX_PER_DEVICE_BATCH = 8  # a batch_size beyond it is made up by gradient accumulation
STAGES: dict[str, Literal["sft", "dpo"]] = {"supervised": "sft", "dpo": "dpo"}


def new_job_id() -> str:
    """`ftjob-` and 24 hex digits, as OpenAI's ids look."""
    return JOB_PREFIX + secrets.token_hex(12)


def new_seed() -> int:
    """A seed for a job that named none (OpenAI answers the one it used, too)."""
    return secrets.randbelow(2**31)


def resolved_method(req: FineTuningJobCreate) -> dict[str, Any]:
    """The method as given (the deprecated top-level `hyperparameters` when no method is), its autos resolved."""
    kind = req.method.type if req.method else "supervised"
    given: Hyperparameters = Hyperparameters()
    if req.method and kind == "dpo" and req.method.dpo:
        given = req.method.dpo.hyperparameters
    elif req.method and kind == "supervised" and req.method.supervised:
        given = req.method.supervised.hyperparameters
    elif req.method is None and req.hyperparameters is not None:
        given = req.hyperparameters
    values = msgspec.to_builtins(given)
    autos = {
        "n_epochs": AUTO_EPOCHS,
        "batch_size": AUTO_BATCH_SIZE,
        "learning_rate_multiplier": AUTO_MULTIPLIER,
        "beta": AUTO_BETA,
    }
    resolved = {key: autos[key] if value == "auto" else value for key, value in values.items()}
    return {"type": kind, kind: {"hyperparameters": resolved}}


def hyperparameters_of(method: dict[str, Any]) -> dict[str, Any]:
    """The resolved hyperparameters of a stored method (what OpenAI's top-level `hyperparameters` echoes)."""
    return method[method["type"]]["hyperparameters"]


def split_batch(batch_size: int) -> tuple[int, int]:
    """(per-device batch, gradient accumulation steps) whose product is `batch_size`: the largest per-device batch
    up to MAX_PER_DEVICE_BATCH that divides it."""
    per_device = max(d for d in range(1, MAX_PER_DEVICE_BATCH + 1) if batch_size % d == 0)
    return per_device, batch_size // per_device


def train_request(req: FineTuningJobCreate, method: dict[str, Any], seed: int, gpu_count: int) -> TrainRequest:
    """The request POST /api/jobs would take for this fine-tuning job: a LoRA training job of the file's dataset,
    its metrics logged at every step and a checkpoint saved at every epoch's end (as OpenAI's are)."""
    params = hyperparameters_of(method)
    per_device, accumulation = split_batch(params["batch_size"])
    overrides: dict[str, Any] = {"seed": seed, "save_strategy": "epoch"}
    if method["type"] == "dpo":
        overrides["pref_beta"] = params["beta"]
    return TrainRequest(
        base_model=req.model,
        datasets=[req.training_file],
        eval_datasets=[req.validation_file] if req.validation_file else [],
        stage=STAGES[method["type"]],
        finetuning_type="lora",
        learning_rate=BASE_LEARNING_RATE * params["learning_rate_multiplier"],
        num_train_epochs=float(params["n_epochs"]),
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        logging_steps=1,
        gpu_count=gpu_count,
        config_overrides=overrides,
        tracking=tracking_of(req.integrations or []),
    )


def tracking_of(integrations: list[Integration]) -> Tracking | None:
    """OpenAI's `integrations` as our job's tracking: one `wandb` integration (project, and optionally name,
    entity, tags) reports to W&B online (offline where the admin forces it: LLMCT_WANDB_MODE)."""
    found: list[WandbTracking] = []
    for index, integration in enumerate(integrations):
        param = f"integrations[{index}]"
        if integration.type != "wandb":
            raise ApiError(400, "invalid_field", f"{param}.type must be 'wandb' (the one integration served)", param)
        if not integration.wandb:
            raise ApiError(400, "invalid_field", f"{param}.wandb is required for a 'wandb' integration", param)
        try:
            found.append(msgspec.convert(integration.wandb, WandbTracking))
        except msgspec.ValidationError as exc:
            raise ApiError(400, "invalid_field", f"{param}.wandb: {exc}", f"{param}.wandb") from exc
    if len(found) > 1:
        raise ApiError(400, "invalid_field", "one wandb integration per job", "integrations")
    return Tracking(wandb=found[0]) if found else None


def field_of_request(field: str | None) -> str | None:
    """OpenAI's name for a field of the request we built, in a refusal: `datasets[0]` is the training file."""
    if field is None:
        return None
    if field.startswith("datasets"):
        return "training_file"
    if field.startswith("eval_datasets"):
        return "validation_file"
    if field == "base_model":
        return "model"
    if field.startswith("tracking.wandb"):
        return "integrations[0].wandb"
    if field in ("learning_rate",):
        return "hyperparameters.learning_rate_multiplier"
    if field in ("per_device_train_batch_size", "gradient_accumulation_steps") or "batch_size" in field:
        return "hyperparameters.batch_size"
    return field


def status_of(state: JobState, pause_requested: bool) -> str:
    """OpenAI's status for our job state; `paused` (our extension) when a pause stopped it."""
    if state in ("pending", "dispatched"):
        return "queued"
    if state == "cancelled" and pause_requested:
        return "paused"
    return state


def fine_tuned_model(base: str, owner: str, suffix: str | None, ftjob_id: str) -> str:
    """`ft:<base>:<owner>:<suffix>:<ftjob id without its prefix>`, as OpenAI names a fine-tuned model."""
    return f"ft:{base}:{owner}:{suffix or ''}:{ftjob_id.removeprefix(JOB_PREFIX)}"


def checkpoint_id(ftjob_id: str, step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step}-{ftjob_id.removeprefix(JOB_PREFIX)}"


def checkpoint_model(model: str, step: int) -> str:
    """A checkpoint's model name: the job's fine-tuned model name and the step."""
    return f"{model}:ckpt-step-{step}"


CHECKPOINT_MODEL = re.compile(r"^ft:.+:(?P<hex>[0-9a-f]{24}):ckpt-step-(?P<step>\d{1,9})$")


def checkpoint_of_model(model: str) -> tuple[str, int] | None:
    """(fine-tuning job id, step) of a checkpoint's model name (`checkpoint_model`), or None for another name."""
    found = CHECKPOINT_MODEL.match(model)
    return (JOB_PREFIX + found.group("hex"), int(found.group("step"))) if found else None


def unix(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp())
