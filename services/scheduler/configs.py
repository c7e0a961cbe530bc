"""Render a job's LLaMA-Factory YAML: a base template per kind, the form's fields, then the
user's `config_overrides` deep-merged last, then the platform's paths, which nobody overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import msgspec
import yaml

from services.common.errors import ApiError

from .schemas import TrainRequest

BASE_TEMPLATES: dict[str, dict[str, Any]] = {
    "train": {
        "do_train": True,
        "trust_remote_code": False,
        "overwrite_cache": True,
        "overwrite_output_dir": True,
        "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0,
        "lr_scheduler_type": "cosine",
        "plot_loss": False,
        "report_to": "none",
        "save_only_model": False,
        "ddp_timeout": 180000000,
    },
}

# Set by the platform from the job; an override of any of these is refused.
PLATFORM_KEYS = frozenset({
    "model_name_or_path", "adapter_name_or_path", "dataset_dir", "dataset", "eval_dataset", "output_dir",
    "logging_dir", "cache_dir", "tokenized_path", "export_dir", "media_dir", "image_dir", "video_dir",
    "audio_dir", "resume_from_checkpoint", "hf_hub_token", "ms_hub_token", "om_hub_token", "push_to_hub",
    "hub_model_id", "hub_token", "hub_strategy", "export_hub_model_id", "run_name", "save_safetensors",
    "trust_remote_code", "use_ray", "ray_storage_path", "ray_run_name", "swanlab_logdir", "mlflow_tracking_uri",
})

# Engine configs a user may name in `deepspeed`; each maps to a file the platform ships.
DEEPSPEED_CONFIGS = Path(__file__).with_name("deepspeed")
ALLOWED_DEEPSPEED = {"z0": "ds_z0_config.json", "z2": "ds_z2_config.json", "z3": "ds_z3_config.json"}

_MAX_OVERRIDE_DEPTH = 4


def deep_merge(base: dict, extra: dict) -> dict:
    """`extra` over `base`, recursing into dicts present in both; neither input is changed."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", "~", "\\")) or ".." in value or "://" in value or value.startswith("file:")


def check_overrides(overrides: dict, path: str = "config_overrides", depth: int = 0) -> None:
    """Refuse overrides that could reach outside the job's folders, run remote code or pick configs."""
    if depth > _MAX_OVERRIDE_DEPTH:
        raise ApiError(422, "invalid_override", "config_overrides is nested too deeply", path)
    for key, value in overrides.items():
        field = f"{path}.{key}"
        if depth == 0 and key in PLATFORM_KEYS:
            raise ApiError(422, "forbidden_override", f"{key} is set by the platform and cannot be overridden", field)
        if depth == 0 and key == "deepspeed":
            if value not in ALLOWED_DEEPSPEED:
                raise ApiError(422, "forbidden_override",
                               f"deepspeed must be one of {sorted(ALLOWED_DEEPSPEED)}", field)
            continue
        if isinstance(value, dict):
            check_overrides(value, field, depth + 1)
        elif isinstance(value, str) and _looks_like_path(value):
            raise ApiError(422, "forbidden_override", "override values cannot be paths or URLs", field)
        elif isinstance(value, list) and any(isinstance(v, str) and _looks_like_path(v) for v in value):
            raise ApiError(422, "forbidden_override", "override values cannot be paths or URLs", field)


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
        fields.update(lora_rank=req.lora_rank, lora_alpha=req.lora_alpha or 2 * req.lora_rank,
                      lora_dropout=req.lora_dropout, lora_target=req.lora_target)
    if finetuning == "qlora":
        fields.update(quantization_bit=req.quantization_bit or 4, quantization_method=req.quantization_method,
                      quantization_type=req.quantization_type, double_quantization=req.double_quantization)
    if req.stage == "pt" or req.train_from_scratch:
        fields["train_from_scratch"] = req.train_from_scratch or req.stage == "pt"
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
    if (req.eval_steps or req.evaluation_strategy not in (None, "no")) and req.val_size <= 0:
        raise ApiError(422, "invalid_field", "evaluation needs a validation split: set val_size > 0", "val_size")
    if req.warmup_ratio > 0 and req.warmup_steps > 0:
        raise ApiError(422, "invalid_field", "set warmup_ratio or warmup_steps, not both", "warmup_steps")
    if req.quantization_bit and req.finetuning_type != "qlora":
        raise ApiError(422, "invalid_field", "quantization_bit applies to finetuning_type 'qlora' only",
                       "quantization_bit")
    if req.finetuning_type == "qlora" and req.gpu_count == 0:
        raise ApiError(422, "invalid_field", "QLoRA needs a GPU (bitsandbytes): set gpu_count >= 1",
                       "finetuning_type")
    if req.train_from_scratch and req.stage != "pt" and req.finetuning_type != "full":
        raise ApiError(422, "invalid_field", "train_from_scratch needs finetuning_type 'full'", "train_from_scratch")


def render_train(req: TrainRequest, *, model_path: str, default_template: str, data_dir: Path,
                 output_dir: Path) -> dict[str, Any]:
    """The final config of a training job (a dict; `to_yaml` freezes it)."""
    check_train_request(req)
    check_overrides(req.config_overrides)
    on_gpu = req.gpu_count > 0
    config = deep_merge(BASE_TEMPLATES["train"], _train_fields(req, req.template or default_template, on_gpu))
    config = deep_merge(config, req.config_overrides)
    if not on_gpu and (config.get("bf16") or config.get("fp16") or config.get("pure_bf16")):
        raise ApiError(422, "invalid_override", "bf16/fp16 need a GPU: this job asks for gpu_count 0",
                       "config_overrides")
    if "deepspeed" in config:
        config["deepspeed"] = str(DEEPSPEED_CONFIGS / ALLOWED_DEEPSPEED[config["deepspeed"]])
    config.update(model_name_or_path=model_path, dataset=",".join(req.datasets), dataset_dir=str(data_dir),
                  output_dir=str(output_dir), trust_remote_code=False)
    return config


def to_yaml(config: dict[str, Any]) -> str:
    """The frozen text the engine runs with."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: same text, 5x faster
    return yaml.dump(config, Dumper=dumper, sort_keys=False, allow_unicode=True)


def request_dict(req: TrainRequest) -> dict[str, Any]:
    return msgspec.to_builtins(req)
