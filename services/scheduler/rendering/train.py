"""Render a training job: its fields as LLaMA-Factory keys, the combinations the engine would refuse, one stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.common.errors import ApiError

from ..jobs import tracking
from ..jobs.schemas import TrainRequest
from .common import (
    ALLOWED_DEEPSPEED,
    BASE_TEMPLATES,
    DEEPSPEED_CONFIGS,
    ENGINE_QUANTIZATION,
    TRAIN_COMMAND,
    Rendered,
    Stage,
    deep_merge,
    merge_overrides,
)
from .overrides import check_overrides


def _train_fields(req: TrainRequest, template: str, on_gpu: bool) -> dict[str, Any]:
    """The form's fields as LLaMA-Factory keys."""
    finetuning = "full" if req.stage == "pt" else req.finetuning_type
    fields: dict[str, Any] = {
        "stage": req.stage,
        "finetuning_type": "lora" if finetuning == "qlora" else finetuning,
        "template": template,
        "cutoff_len": req.cutoff_len,
        "learning_rate": req.learning_rate,
        "num_train_epochs": req.num_train_epochs,
        "per_device_train_batch_size": req.per_device_train_batch_size,
        "gradient_accumulation_steps": req.gradient_accumulation_steps,
        "logging_steps": req.logging_steps,
        "save_steps": req.save_steps,
        "bf16": on_gpu,
        "disable_gradient_checkpointing": not req.gradient_checkpointing,
    }
    # transformers lets any warmup_ratio, even 0.0, override warmup_steps: render only the one asked for.
    if req.warmup_ratio > 0:
        fields["warmup_ratio"] = req.warmup_ratio
    elif req.warmup_steps > 0:
        fields["warmup_steps"] = req.warmup_steps
    if req.max_steps:
        fields["max_steps"] = req.max_steps
    if finetuning in ("lora", "qlora"):
        fields.update(
            lora_rank=req.lora_rank,
            lora_alpha=req.lora_alpha or 2 * req.lora_rank,
            lora_dropout=req.lora_dropout,
            lora_target=req.lora_target,
        )
    if finetuning == "qlora":
        fields.update(
            quantization_bit=req.quantization_bit or 4,
            quantization_method=ENGINE_QUANTIZATION[req.quantization_method],
            quantization_type=req.quantization_type,
            double_quantization=req.double_quantization,
        )
    if req.stage == "pt" or req.train_from_scratch:
        fields["train_from_scratch"] = req.train_from_scratch or req.stage == "pt"
    if req.val_size > 0 or req.eval_datasets:
        if req.val_size > 0:
            fields["val_size"] = req.val_size
        fields["per_device_eval_batch_size"] = req.per_device_train_batch_size
        strategy = req.evaluation_strategy or ("steps" if req.eval_steps else "epoch")
        fields["eval_strategy"] = strategy
        if req.eval_steps:
            fields["eval_steps"] = req.eval_steps
    return fields


def check_train_request(req: TrainRequest) -> None:
    """Combinations of fields the engine would refuse or silently ignore."""
    if req.eval_steps and req.evaluation_strategy not in (None, "steps"):
        raise ApiError(422, "invalid_field", "eval_steps needs evaluation_strategy 'steps'", "evaluation_strategy")
    if (req.eval_steps or req.evaluation_strategy not in (None, "no")) and req.val_size <= 0 and not req.eval_datasets:
        raise ApiError(
            422, "invalid_field", "evaluation needs a validation split: set val_size > 0 or eval_datasets", "val_size"
        )
    if req.val_size > 0 and req.eval_datasets:
        raise ApiError(422, "invalid_field", "set val_size or eval_datasets, not both", "eval_datasets")
    if req.warmup_ratio > 0 and req.warmup_steps > 0:
        raise ApiError(422, "invalid_field", "set warmup_ratio or warmup_steps, not both", "warmup_steps")
    if req.quantization_bit and req.finetuning_type != "qlora":
        raise ApiError(
            422, "invalid_field", "quantization_bit applies to finetuning_type 'qlora' only", "quantization_bit"
        )
    if req.finetuning_type == "qlora" and req.gpu_count == 0:
        raise ApiError(422, "invalid_field", "QLoRA needs a GPU (bitsandbytes): set gpu_count >= 1", "finetuning_type")
    if req.train_from_scratch and req.stage != "pt" and req.finetuning_type != "full":
        raise ApiError(422, "invalid_field", "train_from_scratch needs finetuning_type 'full'", "train_from_scratch")


def render_train(
    req: TrainRequest, *, model_path: str, default_template: str, data_dir: Path, output_dir: Path
) -> dict[str, Any]:
    """The final config of a training job (a dict; `to_yaml` freezes it)."""
    check_train_request(req)
    check_overrides(req.config_overrides, parser="train", form=req, stage=req.stage)
    on_gpu = req.gpu_count > 0
    config = deep_merge(BASE_TEMPLATES["train"], _train_fields(req, req.template or default_template, on_gpu))
    config = merge_overrides(config, req.config_overrides, on_gpu)
    if "deepspeed" in config:
        config["deepspeed"] = str(DEEPSPEED_CONFIGS / ALLOWED_DEEPSPEED[config["deepspeed"]])
    config.update(
        model_name_or_path=model_path,
        dataset=",".join(req.datasets),
        **({"eval_dataset": ",".join(req.eval_datasets)} if req.eval_datasets else {}),
        dataset_dir=str(data_dir),
        output_dir=str(output_dir),
        trust_remote_code=False,
    )
    config.update(tracking_keys(req, output_dir))
    return config


def tracking_keys(req: TrainRequest, output_dir: Path) -> dict[str, Any]:
    """The trackers the job reports to (its `tracking`; an override may pick TensorBoard alone), the run named
    after the job (or the W&B name given: the engine names the runs of every tracker alike), and TensorBoard's
    event files inside the job's output folder."""
    chosen = tracking.report_to(req.tracking)
    if not chosen:
        return {}
    named = req.tracking.wandb.name if req.tracking and req.tracking.wandb else None
    keys: dict[str, Any] = {"report_to": chosen, "run_name": named or output_dir.name}
    if "tensorboard" in chosen:
        keys["logging_dir"] = str(output_dir / tracking.TENSORBOARD_FOLDER)
    return keys


def train_stages(config: dict[str, Any], hub: str | None, env: dict[str, str] | None = None) -> Rendered:
    """A training job: one stage, its model from `hub` (None: a local copy), with its tracking's variables."""
    return Rendered(stages=[Stage(name="train", command=TRAIN_COMMAND, config=config, hub=hub, env=env or {})])
