"""Render a job's LLaMA-Factory YAML: a base template per kind, the form's fields, then the
user's `config_overrides` deep-merged last, then the platform's paths, which nobody overrides.

A job runs as one or more engine stages (`Stage`: a command and its YAML); all but a LoRA export
with quantisation have one. That one is two: merge the adapter into its base, then quantise the merge.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import msgspec
import yaml

from services.common.errors import ApiError

from ..jobs.schemas import DeployRequest, EvalRequest, ExportRequest, TrainRequest

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
    "eval": {
        "do_train": False,
        "trust_remote_code": False,
        "overwrite_cache": True,
        "overwrite_output_dir": True,
        "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0,
        "report_to": "none",
    },
    "export": {"trust_remote_code": False},
    "deploy": {"trust_remote_code": False, "infer_backend": "huggingface"},
}

# The engine command of each stage, before the YAML's path. LLaMA-Factory 0.9.5 dropped the `eval`
# subcommand, but its multiple-choice evaluator still works when called directly.
TRAIN_COMMAND = ("llamafactory-cli", "train")
EXPORT_COMMAND = ("llamafactory-cli", "export")
SERVE_COMMAND = ("llamafactory-cli", "api")
BENCHMARK_COMMAND = ("python", "-c", "from llamafactory.eval.evaluator import run_eval; run_eval()")


class Stage(msgspec.Struct, kw_only=True):
    """One engine run of a job: `command` + the path of this stage's YAML."""

    name: str
    command: tuple[str, ...]
    config: dict[str, Any]
    serve: dict[str, float] | None = None  # startup_timeout_s, idle_timeout_s: a stage that serves
    hub: str | None = None  # where model_name_or_path is downloaded from (contracts.EngineStage.hub)

    def yaml(self) -> str:
        """The stage's frozen YAML; a ModelScope model says so, since the YAML alone would run it from Hugging Face."""
        return hub_note(self.hub) + to_yaml(self.config)


def hub_note(hub: str | None) -> str:
    """The comment heading a stage's YAML whose model needs the engine told its hub."""
    if hub == "modelscope":
        return "# model hub: modelscope (the engine runs with USE_MODELSCOPE_HUB=1)\n"
    return ""


class Rendered(msgspec.Struct, kw_only=True):
    """What a job runs: its stages, in order. `config` (the last stage's) is what the job produced."""

    stages: list[Stage]

    @property
    def config(self) -> dict[str, Any]:
        return self.stages[-1].config

    @property
    def model_hub(self) -> str | None:
        """The hub the job's model comes from (its first stage that downloads one); None: all local."""
        return next((s.hub for s in self.stages if s.hub), None)

    def stage_rows(self) -> list[dict[str, Any]]:
        """The stages as stored with the job (and sent to the agent)."""
        return [{"name": s.name, "command": list(s.command), "config_yaml": s.yaml(),
                 **({"serve": s.serve} if s.serve else {}), **({"hub": s.hub} if s.hub else {})}
                for s in self.stages]

    def yaml_text(self) -> str:
        """Every stage's YAML, one document each, for people to read."""
        if len(self.stages) == 1:
            return self.stages[0].yaml()
        last = len(self.stages)
        return "".join(f"# stage {i} of {last}: {s.name}\n{s.yaml()}" + ("---\n" if i < last else "")
                       for i, s in enumerate(self.stages, 1))


def model_hub(stage_rows: list[dict[str, Any]] | None) -> str | None:
    """The hub of a job's stored stages (`jobs.stages`): the first that names one."""
    return next((row["hub"] for row in stage_rows or () if row.get("hub")), None)


# Set by the platform from the job; an override of any of these is refused.
PLATFORM_KEYS = frozenset({
    "model_name_or_path", "adapter_name_or_path", "dataset_dir", "dataset", "eval_dataset", "output_dir",
    "logging_dir", "cache_dir", "tokenized_path", "export_dir", "media_dir", "image_dir", "video_dir",
    "audio_dir", "resume_from_checkpoint", "hf_hub_token", "ms_hub_token", "om_hub_token", "push_to_hub",
    "hub_model_id", "hub_token", "hub_strategy", "export_hub_model_id", "run_name", "save_safetensors",
    "trust_remote_code", "use_ray", "ray_storage_path", "ray_run_name", "swanlab_logdir", "mlflow_tracking_uri",
    "task_dir", "save_dir", "export_quantization_dataset", "do_train", "do_eval", "do_predict",
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


def _merge_overrides(base: dict[str, Any], overrides: dict[str, Any], on_gpu: bool) -> dict[str, Any]:
    config = deep_merge(base, overrides)
    if not on_gpu and (config.get("bf16") or config.get("fp16") or config.get("pure_bf16")):
        raise ApiError(422, "invalid_override", "bf16/fp16 need a GPU: this job asks for gpu_count 0",
                       "config_overrides")
    return config


def render_train(req: TrainRequest, *, model_path: str, default_template: str, data_dir: Path,
                 output_dir: Path) -> dict[str, Any]:
    """The final config of a training job (a dict; `to_yaml` freezes it)."""
    check_train_request(req)
    check_overrides(req.config_overrides)
    on_gpu = req.gpu_count > 0
    config = deep_merge(BASE_TEMPLATES["train"], _train_fields(req, req.template or default_template, on_gpu))
    config = _merge_overrides(config, req.config_overrides, on_gpu)
    if "deepspeed" in config:
        config["deepspeed"] = str(DEEPSPEED_CONFIGS / ALLOWED_DEEPSPEED[config["deepspeed"]])
    config.update(model_name_or_path=model_path, dataset=",".join(req.datasets), dataset_dir=str(data_dir),
                  output_dir=str(output_dir), trust_remote_code=False)
    return config


def train_stages(config: dict[str, Any], hub: str | None) -> Rendered:
    """A training job: one stage, its model from `hub` (None: a local copy)."""
    return Rendered(stages=[Stage(name="train", command=TRAIN_COMMAND, config=config, hub=hub)])


class ModelPaths(msgspec.Struct, kw_only=True, frozen=True):
    """Where a job finds the model it uses: a full model, or a LoRA adapter and the base it sits on."""

    model_path: str
    adapter_path: str | None = None
    template: str = "default"
    hub: str | None = None  # where model_path is downloaded from (huggingface | modelscope); None: a local copy


def _model_keys(model: ModelPaths) -> dict[str, Any]:
    keys: dict[str, Any] = {"model_name_or_path": model.model_path}
    if model.adapter_path:
        keys.update(adapter_name_or_path=model.adapter_path, finetuning_type="lora")
    return keys


def check_eval_request(req: EvalRequest, installed_tasks: list[str]) -> None:
    """Fields each evaluation needs, and those it would silently ignore."""
    if req.evaluation == "benchmark":
        if req.task is None:
            raise ApiError(422, "invalid_field", "a benchmark evaluation needs a task "
                           f"(installed: {', '.join(installed_tasks) or 'none'})", "task")
        if req.task not in installed_tasks:
            raise ApiError(422, "unknown_task", f"benchmark task {req.task!r} is not installed on this platform "
                           f"(installed: {', '.join(installed_tasks) or 'none'}); an admin adds tasks under "
                           "cloud-llm/evaluation/<task>/", "task")
        if req.datasets:
            raise ApiError(422, "invalid_field", "a benchmark brings its own questions: leave datasets empty",
                           "datasets")
    else:
        if not req.datasets:
            raise ApiError(422, "invalid_field", f"a {req.evaluation} evaluation needs at least one dataset",
                           "datasets")
        if req.task is not None:
            raise ApiError(422, "invalid_field", "task applies to evaluation 'benchmark' only", "task")


def render_eval(req: EvalRequest, *, model: ModelPaths, stage: str, data_dir: Path, task_dir: Path,
                output_dir: Path) -> Rendered:
    """One stage: `do_eval` (loss, perplexity), `do_predict` with generation (BLEU, ROUGE), or the
    multiple-choice evaluator (accuracy per category)."""
    check_overrides(req.config_overrides)
    on_gpu = req.gpu_count > 0
    template = req.template or model.template
    if req.evaluation == "benchmark":
        fields = {"template": template, "task": f"{req.task}_{req.split}", "lang": req.lang, "n_shot": req.n_shot,
                  "batch_size": req.per_device_eval_batch_size}
        config = _merge_overrides({"trust_remote_code": False, **fields}, req.config_overrides, on_gpu)
        config.update(_model_keys(model), task_dir=str(task_dir), save_dir=str(output_dir / "results"),
                      trust_remote_code=False)
        return Rendered(stages=[Stage(name="benchmark", command=BENCHMARK_COMMAND, config=config, hub=model.hub)])
    fields: dict[str, Any] = {"stage": stage, "finetuning_type": "lora", "template": template,
                              "cutoff_len": req.cutoff_len, "per_device_eval_batch_size": req.per_device_eval_batch_size,
                              "bf16": on_gpu}
    if req.max_samples:
        fields["max_samples"] = req.max_samples
    if req.evaluation == "generation":
        fields.update(max_new_tokens=req.max_new_tokens, temperature=req.temperature, top_p=req.top_p,
                      do_sample=req.do_sample)
    config = _merge_overrides(deep_merge(BASE_TEMPLATES["eval"], fields), req.config_overrides, on_gpu)
    if req.evaluation == "generation":
        config.update(do_eval=False, do_predict=True, predict_with_generate=True)
    else:
        config.update(do_eval=True, do_predict=False)
    config.update(_model_keys(model), eval_dataset=",".join(req.datasets), dataset_dir=str(data_dir),
                  output_dir=str(output_dir), do_train=False, trust_remote_code=False)
    return Rendered(stages=[Stage(name=req.evaluation, command=TRAIN_COMMAND, config=config, hub=model.hub)])


def check_export_request(req: ExportRequest, is_adapter: bool) -> None:
    q = req.quantization
    if req.export_device == "auto" and req.gpu_count == 0:
        raise ApiError(422, "invalid_field", "export_device 'auto' loads the model on GPUs: set gpu_count >= 1",
                       "export_device")
    if q is None:
        if not is_adapter:
            raise ApiError(422, "nothing_to_export", "this model is already a full model: exporting it without "
                           "quantization would only copy it. Ask for quantization, or pick a LoRA adapter to merge",
                           "quantization")
        return
    if q.method == "bitsandbytes":
        if q.bits not in (4, 8):
            raise ApiError(422, "invalid_field", "bitsandbytes quantises to 4 or 8 bits", "quantization.bits")
        if req.gpu_count == 0:
            raise ApiError(422, "invalid_field", "bitsandbytes quantisation needs a GPU: set gpu_count >= 1",
                           "gpu_count")
        if q.calibration_dataset:
            raise ApiError(422, "invalid_field", "calibration_dataset applies to method 'gptq' only",
                           "quantization.calibration_dataset")
    elif not q.calibration_dataset:
        raise ApiError(422, "invalid_field", "GPTQ needs a calibration dataset: a plain-text dataset with a "
                       "'text' column", "quantization.calibration_dataset")


def render_export(req: ExportRequest, *, model: ModelPaths, output_dir: Path,
                  calibration_file: str | None = None) -> Rendered:
    """Merge (a LoRA adapter), quantise (a full model), or both: merge into `output_dir/merged`, then
    quantise that. `export_quantization_*` keys appear only for GPTQ (the seed's rule)."""
    check_export_request(req, model.adapter_path is not None)
    check_overrides(req.config_overrides)
    on_gpu = req.gpu_count > 0
    common = {"template": req.template or model.template, "export_size": req.export_size,
              "export_device": "auto" if on_gpu and req.export_device == "auto" else req.export_device,
              "export_legacy_format": req.export_legacy_format}
    export_dir = output_dir / "export"
    q = req.quantization

    def stage(name: str, source: ModelPaths, target: Path, quantise: bool) -> Stage:
        fields = dict(common)
        if quantise and q is not None and q.method == "bitsandbytes":
            fields.update(quantization_bit=q.bits, quantization_method="bitsandbytes", export_device="auto")
        elif quantise and q is not None:
            fields.update(export_quantization_bit=q.bits, export_quantization_nsamples=q.calibration_samples,
                          export_quantization_maxlen=q.calibration_maxlen)
        config = _merge_overrides(deep_merge(BASE_TEMPLATES["export"], fields), req.config_overrides, on_gpu)
        config.update(_model_keys(source), export_dir=str(target), trust_remote_code=False)
        if quantise and q is not None and q.method == "gptq":
            config["export_quantization_dataset"] = calibration_file
        return Stage(name=name, command=EXPORT_COMMAND, config=config, hub=source.hub)

    if q is None:
        return Rendered(stages=[stage("merge", model, export_dir, quantise=False)])
    if model.adapter_path is None:
        return Rendered(stages=[stage("quantize", model, export_dir, quantise=True)])
    merged = output_dir / "merged"
    return Rendered(stages=[
        stage("merge", model, merged, quantise=False),
        stage("quantize", ModelPaths(model_path=str(merged), template=model.template), export_dir, quantise=True),
    ])


def render_deploy(req: DeployRequest, *, model: ModelPaths, startup_timeout_s: float,
                  idle_timeout_s: float) -> Rendered:
    """The inference YAML of `llamafactory-cli api`: model (an adapter on its base), template, generation
    defaults, then overrides; served as one stage that runs until stopped or idle."""
    check_overrides(req.config_overrides)
    on_gpu = req.gpu_count > 0
    fields = {"template": req.template or model.template, **msgspec.to_builtins(req.generation)}
    config = _merge_overrides(deep_merge(BASE_TEMPLATES["deploy"], fields), req.config_overrides, on_gpu)
    config.update(_model_keys(model), trust_remote_code=False)
    return Rendered(stages=[Stage(name="serve", command=SERVE_COMMAND, config=config, hub=model.hub,
                                  serve={"startup_timeout_s": startup_timeout_s, "idle_timeout_s": idle_timeout_s})])


def to_yaml(config: dict[str, Any]) -> str:
    """The frozen text the engine runs with."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: same text, 5x faster
    return yaml.dump(config, Dumper=dumper, sort_keys=False, allow_unicode=True)


def request_dict(req: TrainRequest | EvalRequest | ExportRequest | DeployRequest) -> dict[str, Any]:
    return msgspec.to_builtins(req)
