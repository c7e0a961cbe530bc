"""OpenAI's fine-tuning objects (https://platform.openai.com/docs/api-reference/fine-tuning), as this API takes and
answers them; `llmct` on a job is our extension: the platform job behind it and the registry model it made."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

Auto = Literal["auto"]
Epochs = Annotated[int, Meta(ge=1, le=50)] | Auto
BatchSize = Annotated[int, Meta(ge=1, le=256)] | Auto
Multiplier = Annotated[float, Meta(gt=0, le=10_000)] | Auto
Beta = Annotated[float, Meta(gt=0, le=2)] | Auto
FileId = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
# A model's name, or a checkpoint's (`ft:<base>:<owner>:<suffix>:<id>:ckpt-step-<n>`, mapping.checkpoint_model).
ModelName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=512,
        pattern=r"^([A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}|ft:[A-Za-z0-9_.\-/:]+:ckpt-step-[0-9]{1,9})$",
    ),
]
Suffix = Annotated[str, Meta(max_length=64, pattern=r"^[a-z0-9_-]*$")]
MetaKey = Annotated[str, Meta(min_length=1, max_length=64)]
MetaValue = Annotated[str, Meta(max_length=512)]
Metadata = Annotated[dict[MetaKey, MetaValue], Meta(max_length=16)]


class Hyperparameters(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Supervised hyperparameters (and the deprecated top-level `hyperparameters`)."""

    n_epochs: Epochs = "auto"
    batch_size: BatchSize = "auto"
    learning_rate_multiplier: Multiplier = "auto"


class DpoHyperparameters(Hyperparameters, kw_only=True, forbid_unknown_fields=True):
    beta: Beta = "auto"


class Supervised(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    hyperparameters: Hyperparameters = msgspec.field(default_factory=Hyperparameters)


class Dpo(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    hyperparameters: DpoHyperparameters = msgspec.field(default_factory=DpoHyperparameters)


class Method(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: Literal["supervised", "dpo"]
    supervised: Supervised | None = None
    dpo: Dpo | None = None


class Integration(msgspec.Struct, kw_only=True):
    """Stored and echoed as sent (`type` "wandb" and its settings)."""

    type: Annotated[str, Meta(min_length=1, max_length=64)]
    wandb: dict[str, Any] | None = None


class FineTuningJobCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /v1/fine_tuning/jobs."""

    model: ModelName
    training_file: FileId
    validation_file: FileId | None = None
    suffix: Suffix | None = None
    seed: Annotated[int, Meta(ge=0, le=2**31 - 1)] | None = None
    metadata: Metadata | None = None
    integrations: Annotated[list[Integration], Meta(max_length=8)] | None = None
    method: Method | None = None
    hyperparameters: Hyperparameters | None = None  # deprecated by OpenAI: `method` wins when both are sent


class FineTuningError(msgspec.Struct, kw_only=True):
    code: str
    message: str
    param: str | None


class LlmctExtension(msgspec.Struct, kw_only=True):
    job_id: str  # the platform's job: /api/jobs/{job_id}
    model_name: str | None  # the registry model the job's output was registered as; null before


class FineTuningJob(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    model: str
    created_at: int
    finished_at: int | None
    fine_tuned_model: str | None
    organization_id: str
    result_files: list[str]
    status: str
    validation_file: str | None
    training_file: str
    hyperparameters: dict[str, Any]
    method: dict[str, Any]
    trained_tokens: int | None
    error: FineTuningError | None
    seed: int
    estimated_finish: int | None
    integrations: list[dict[str, Any]]
    metadata: dict[str, str] | None
    user_provided_suffix: str | None
    llmct: LlmctExtension


class FineTuningJobPage(msgspec.Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[FineTuningJob]
    has_more: bool


class FineTuningEvent(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"]
    data: dict[str, Any]


class FineTuningEventPage(msgspec.Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[FineTuningEvent]
    has_more: bool


class FineTuningCheckpoint(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    step_number: int
    metrics: dict[str, float | None]
    fine_tuning_job_id: str


class FineTuningSummary(msgspec.Struct, kw_only=True):
    """A fine-tuning job as the job page shows it beside our job (`JobDetail.fine_tuning`)."""

    id: str  # ftjob-...
    status: str  # OpenAI's status
    fine_tuned_model: str | None  # its `ft:` name, once it succeeded
    trained_tokens: int | None  # null until it succeeded, as OpenAI's
    result_files: list[str]  # its metrics CSV (GET /v1/files/{id}/content, or /api/jobs/{id}/results.csv)
    method: str  # supervised | dpo
    hyperparameters: dict[str, Any]  # resolved: "auto" is shown as the value we chose
    suffix: str | None
    checkpoints: list[FineTuningCheckpoint]  # newest first, the last MAX_SHOWN_CHECKPOINTS


class FineTuningCheckpointPage(msgspec.Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[FineTuningCheckpoint]
    first_id: str | None
    last_id: str | None
    has_more: bool
