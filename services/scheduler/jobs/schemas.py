"""Request and response shapes of /api/jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, cast

import msgspec
from msgspec import Meta

from services.common.contracts import EngineChoice, JobKind, ModelHub

from ..openai.schemas import FineTuningSummary

Name = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-/]*$")]
Template = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
Priority = Annotated[int, Meta(ge=-100, le=100)]
GpuCount = Annotated[int, Meta(ge=0, le=16)]
Datasets = Annotated[list[Name], Meta(min_length=1, max_length=16)]


class JobRequestBase(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    """What every kind of job has: a queue priority, the GPUs it holds, and engine keys set last."""

    priority: Priority = 0
    gpu_count: GpuCount = 1
    retries: Annotated[int, Meta(ge=0, le=10)] = 1  # re-queues when its agent goes offline mid-run
    config_overrides: dict[str, Any] = msgspec.field(default_factory=dict)


# Experiment tracking (docs/tracking.md). Names stay within what MLflow and W&B accept and what an env var holds.
TrackingName = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\- /]*$")]
WandbName = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
WandbTag = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")]
TrackingUrl = Annotated[str, Meta(min_length=8, max_length=512)]


class MlflowTracking(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Report to an MLflow tracking server: the run is created before the engine starts, named after the job."""

    tracking_uri: TrackingUrl  # http(s) only, no credentials (those are the user's secrets)
    experiment: TrackingName = "llmct"


class WandbTracking(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Report to Weights & Biases; `offline` keeps the run in the job's outputs (`wandb sync` it later)."""

    project: WandbName
    entity: WandbName | None = None
    name: TrackingName | None = None  # the run's display name (default: the job's id)
    tags: Annotated[list[WandbTag], Meta(max_length=16)] = msgspec.field(default_factory=list)
    mode: Literal["online", "offline"] = "online"
    base_url: TrackingUrl | None = None  # a W&B server of your own (default https://api.wandb.ai)


class Tracking(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where a training job reports its metrics besides the platform (any of the three)."""

    mlflow: MlflowTracking | None = None
    wandb: WandbTracking | None = None
    tensorboard: bool = False


class TrainRequest(JobRequestBase, kw_only=True, tag="train"):
    """The fields of the seed's training form."""

    base_model: Name
    datasets: Annotated[list[Name], Meta(min_length=1, max_length=16)]
    # Validated on these instead of a split of `datasets` (val_size); a validation pass every epoch unless told
    eval_datasets: Annotated[list[Name], Meta(max_length=16)] = msgspec.field(default_factory=list)
    stage: Literal["pt", "sft", "rm", "dpo", "kto"] = "sft"
    finetuning_type: Literal["lora", "qlora", "full", "freeze"] = "lora"
    learning_rate: Annotated[float, Meta(gt=0, le=1)] = 1e-4
    num_train_epochs: Annotated[float, Meta(gt=0, le=1000)] = 3.0
    max_steps: Annotated[int, Meta(ge=1, le=10_000_000)] | None = None
    lora_rank: Annotated[int, Meta(ge=1, le=1024)] = 8
    lora_alpha: Annotated[int, Meta(ge=1, le=4096)] | None = None
    lora_dropout: Annotated[float, Meta(ge=0, lt=1)] = 0.0
    lora_target: Annotated[str, Meta(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9_,.\-]+$")] = "all"
    per_device_train_batch_size: Annotated[int, Meta(ge=1, le=64)] = 2
    gradient_accumulation_steps: Annotated[int, Meta(ge=1, le=512)] = 4
    cutoff_len: Annotated[int, Meta(ge=8, le=131_072)] = 1024
    warmup_ratio: Annotated[float, Meta(ge=0, le=0.5)] = 0.0
    warmup_steps: Annotated[int, Meta(ge=0, le=1_000_000)] = 0
    val_size: Annotated[float, Meta(ge=0, lt=1)] = 0.0
    eval_steps: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    evaluation_strategy: Literal["no", "steps", "epoch"] | None = None
    logging_steps: Annotated[int, Meta(ge=1, le=100_000)] = 5
    save_steps: Annotated[int, Meta(ge=1, le=1_000_000)] = 500
    quantization_bit: Literal[2, 3, 4, 5, 6, 8] | None = None
    quantization_method: Literal["bitsandbytes", "hqq", "eetq"] = "bitsandbytes"
    quantization_type: Literal["nf4", "fp4"] = "nf4"
    double_quantization: bool = True
    train_from_scratch: bool = False
    gradient_checkpointing: bool = True
    template: Template | None = None
    tracking: Tracking | None = None


class EvalRequest(JobRequestBase, kw_only=True, tag="eval"):
    """Score a model: loss and perplexity on datasets, generation scored with BLEU/ROUGE, or a
    multiple-choice benchmark (MMLU / C-Eval / CMMLU style) whose task data is installed locally."""

    model: Name
    evaluation: Literal["loss", "generation", "benchmark"] = "loss"
    datasets: Annotated[list[Name], Meta(max_length=16)] = msgspec.field(default_factory=list)
    template: Template | None = None
    per_device_eval_batch_size: Annotated[int, Meta(ge=1, le=256)] = 4
    max_samples: Annotated[int, Meta(ge=1, le=10_000_000)] | None = None
    cutoff_len: Annotated[int, Meta(ge=8, le=131_072)] = 1024
    # generation
    max_new_tokens: Annotated[int, Meta(ge=1, le=32_768)] = 128
    temperature: Annotated[float, Meta(ge=0, le=2)] = 0.95
    top_p: Annotated[float, Meta(gt=0, le=1)] = 0.7
    do_sample: bool = False
    # benchmark
    task: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9]+$")] | None = None
    split: Literal["test", "validation", "train"] = "test"
    n_shot: Annotated[int, Meta(ge=0, le=25)] = 5
    lang: Literal["en", "zh"] = "en"


class Quantization(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How an export is quantised: bitsandbytes on load (GPU), or GPTQ with a calibration dataset."""

    method: Literal["bitsandbytes", "gptq"] = "bitsandbytes"
    bits: Literal[2, 3, 4, 8] = 4
    calibration_dataset: Name | None = None
    calibration_samples: Annotated[int, Meta(ge=1, le=4096)] = 128
    calibration_maxlen: Annotated[int, Meta(ge=16, le=32_768)] = 1024


class ExportRequest(JobRequestBase, kw_only=True, tag="export"):
    """Merge a LoRA adapter into its base and/or quantise a model into a new registered model."""

    model: Name
    template: Template | None = None
    export_size: Annotated[int, Meta(ge=1, le=100)] = 5
    export_device: Literal["cpu", "auto"] = "cpu"
    export_legacy_format: bool = False
    quantization: Quantization | None = None
    gpu_count: GpuCount = 0


JobRequest = TrainRequest | EvalRequest | ExportRequest


def kind_of(req: JobRequest | DeployRequest) -> JobKind:
    """The kind a request asks for: its tag."""
    return cast(JobKind, type(req).__struct_config__.tag)


class Generation(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Generation defaults of a deployment; a chat request's own values win."""

    temperature: Annotated[float, Meta(ge=0, le=2)] = 0.95
    top_p: Annotated[float, Meta(gt=0, le=1)] = 0.7
    top_k: Annotated[int, Meta(ge=1, le=1000)] = 50
    max_new_tokens: Annotated[int, Meta(ge=1, le=32_768)] = 512
    repetition_penalty: Annotated[float, Meta(ge=1, le=2)] = 1.0
    do_sample: bool = True


class DeployRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Serve a model on an agent with vLLM's OpenAI server (continuous batching, LoRA adapters of the base loaded
    on demand) or LLaMA-Factory's API server (one request at a time). `auto`: vLLM where the agent has it."""

    model: Name
    template: Template | None = None
    generation: Generation = msgspec.field(default_factory=Generation)
    idle_timeout_s: Annotated[int, Meta(ge=10, le=86_400)] | None = None
    gpu_count: GpuCount = 1
    priority: Priority = 0
    config_overrides: dict[str, Any] = msgspec.field(default_factory=dict)
    engine: EngineChoice = "auto"
    adapter_slots: Annotated[int, Meta(ge=1, le=64)] = 4  # vLLM: adapters held at once (LRU beyond)
    max_lora_rank: Annotated[int, Meta(ge=8, le=256)] = 64  # vLLM: the largest adapter rank it loads
    max_in_flight: Annotated[int, Meta(ge=1, le=256)] = 16  # requests the engine runs at once
    max_queue: Annotated[int, Meta(ge=0, le=1024)] = 64  # requests waiting beyond those (more: 429)
    max_model_len: Annotated[int, Meta(ge=64, le=131_072)] | None = None  # vLLM: context length (None: the model's)


class JobEventOut(msgspec.Struct, kw_only=True):
    state: str
    reason: str | None
    message: str | None
    at: datetime


class ProgressPoint(msgspec.Struct, kw_only=True):
    step: int
    total_steps: int
    loss: float | None
    eval_loss: float | None  # the validation loss, at the steps a validation pass ran
    learning_rate: float | None
    epoch: float | None
    elapsed_s: float | None
    remaining_s: float | None
    at: datetime
    tokens_seen: int | None = None  # the tokens trained on up to this step (padding not counted); null: not counted


class SavedCheckpoint(msgspec.Struct, kw_only=True):
    """A checkpoint the job's trainer saved, as its agent told it once whole (and, in objects mode, stored)."""

    step: int
    saved_at: datetime
    train_loss: float | None  # the newest logged at or before its step
    valid_loss: float | None
    epoch: float | None


class InputsFetch(msgspec.Struct, kw_only=True):
    """How far the job's agent is in bringing its inputs from the store before its engine starts (`objects`
    storage mode): bytes of all its inputs (a cached one counts as there), and the input it is on."""

    input: str  # a file's name (`tiny_sft.jsonl`)
    done_bytes: int
    total_bytes: int
    at: datetime  # when the agent reported it (a few times a second while it fetches)


class JobSummary(msgspec.Struct, kw_only=True):
    id: str
    kind: str
    state: str
    priority: int
    gpu_count: int
    base_model: str | None
    agent_id: str | None
    reason: str | None
    wait_reason: str | None  # a pending job: why it has not started yet
    queue_position: int | None  # a pending job: 1 goes next
    progress: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    openai_id: str | None = None  # its fine-tuning job's id (ftjob-...) when created through /v1/fine_tuning/jobs


class TrackingRun(msgspec.Struct, kw_only=True):
    """One tracker a job reports to, as its page shows it."""

    kind: Literal["mlflow", "wandb", "tensorboard"]
    url: str | None  # the run's page; null: none (W&B offline or without an entity, TensorBoard, MLflow not started)
    run_id: str | None = None
    experiment_id: str | None = None  # MLflow's
    mode: str | None = None  # W&B: online | offline
    folder: str | None = None  # where in the job's outputs its files are (W&B offline, TensorBoard)


class JobDetail(JobSummary, kw_only=True):
    owner_id: str
    message: str | None
    request: dict[str, Any]
    config: dict[str, Any]
    config_yaml: str
    estimate: dict[str, Any]
    gpu_ids: list[int]
    metrics: dict[str, float] | None
    cancel_requested: bool
    requeues: int  # times it went back to the queue after losing its agent
    resume_step: int | None  # a failed or cancelled training job: the step of the newest checkpoint to resume from
    history: list[JobEventOut]
    progress_series: list[ProgressPoint]  # at most `series_points`, thinned evenly when there are more
    model_hub: ModelHub | None = None  # where the model is downloaded from; null: a local copy
    progress_points: int = 0  # the points stored past `series_after_step`, before thinning
    fetch: InputsFetch | None = None  # its inputs' fetch in this attempt (objects mode); null: none reported
    tracking: list[TrackingRun] = msgspec.field(default_factory=list)  # the experiment trackers it reports to
    checkpoints: list[SavedCheckpoint] = msgspec.field(default_factory=list)  # newest first; kept ones only
    trained_tokens: int | None = None  # tokens trained on so far (padding not counted); null where none counted
    fine_tuning: FineTuningSummary | None = None  # a job created through /v1/fine_tuning/jobs: OpenAI's face of it


class JobPreview(msgspec.Struct, kw_only=True):
    """What a job would run, without queuing it (`POST /api/jobs?dry_run=true`). Paths name a placeholder job."""

    kind: str
    config: dict[str, Any]
    config_yaml: str
    stages: list[str]
    estimate: dict[str, Any]
    model_hub: ModelHub | None = None  # where the model is downloaded from; null: a local copy


class JobPage(msgspec.Struct, kw_only=True):
    items: list[JobSummary]
    next_cursor: str | None
