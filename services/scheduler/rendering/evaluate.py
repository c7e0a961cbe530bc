"""Render an evaluation job: loss and perplexity, generation (BLEU, ROUGE), or a multiple-choice benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.common.errors import ApiError

from ..jobs.schemas import EvalRequest
from .common import (
    BASE_TEMPLATES,
    BENCHMARK_COMMAND,
    TRAIN_COMMAND,
    ModelPaths,
    Rendered,
    Stage,
    deep_merge,
    merge_overrides,
    model_keys,
)
from .overrides import check_overrides


def check_eval_request(req: EvalRequest, installed_tasks: list[str]) -> None:
    """Fields each evaluation needs, and those it would silently ignore."""
    if req.evaluation == "benchmark":
        if req.task is None:
            raise ApiError(
                422,
                "invalid_field",
                f"a benchmark evaluation needs a task (installed: {', '.join(installed_tasks) or 'none'})",
                "task",
            )
        if req.task not in installed_tasks:
            raise ApiError(
                422,
                "unknown_task",
                f"benchmark task {req.task!r} is not installed on this platform "
                f"(installed: {', '.join(installed_tasks) or 'none'}); an admin adds tasks under "
                "cloud-llm/evaluation/<task>/",
                "task",
            )
        if req.datasets:
            raise ApiError(
                422, "invalid_field", "a benchmark brings its own questions: leave datasets empty", "datasets"
            )
    else:
        if not req.datasets:
            raise ApiError(
                422, "invalid_field", f"a {req.evaluation} evaluation needs at least one dataset", "datasets"
            )
        if req.task is not None:
            raise ApiError(422, "invalid_field", "task applies to evaluation 'benchmark' only", "task")


def render_eval(
    req: EvalRequest, *, model: ModelPaths, stage: str, data_dir: Path, task_dir: Path, output_dir: Path
) -> Rendered:
    """One stage: `do_eval` (loss, perplexity), `do_predict` with generation (BLEU, ROUGE), or the
    multiple-choice evaluator (accuracy per category)."""
    on_gpu = req.gpu_count > 0
    template = req.template or model.template
    if req.evaluation == "benchmark":
        check_overrides(req.config_overrides, parser="eval", form=req)
        fields = {
            "template": template,
            "task": f"{req.task}_{req.split}",
            "lang": req.lang,
            "n_shot": req.n_shot,
            "batch_size": req.per_device_eval_batch_size,
        }
        config = merge_overrides({"trust_remote_code": False, **fields}, req.config_overrides, on_gpu)
        config.update(
            model_keys(model), task_dir=str(task_dir), save_dir=str(output_dir / "results"), trust_remote_code=False
        )
        return Rendered(stages=[Stage(name="benchmark", command=BENCHMARK_COMMAND, config=config, hub=model.hub)])
    check_overrides(req.config_overrides, parser="train", form=req, stage=stage)
    fields: dict[str, Any] = {
        "stage": stage,
        "finetuning_type": "lora",
        "template": template,
        "cutoff_len": req.cutoff_len,
        "per_device_eval_batch_size": req.per_device_eval_batch_size,
        "bf16": on_gpu,
    }
    if req.max_samples:
        fields["max_samples"] = req.max_samples
    if req.evaluation == "generation":
        fields.update(
            max_new_tokens=req.max_new_tokens, temperature=req.temperature, top_p=req.top_p, do_sample=req.do_sample
        )
    config = merge_overrides(deep_merge(BASE_TEMPLATES["eval"], fields), req.config_overrides, on_gpu)
    if req.evaluation == "generation":
        config.update(do_eval=False, do_predict=True, predict_with_generate=True)
    else:
        config.update(do_eval=True, do_predict=False)
    config.update(
        model_keys(model),
        eval_dataset=",".join(req.datasets),
        dataset_dir=str(data_dir),
        output_dir=str(output_dir),
        do_train=False,
        trust_remote_code=False,
    )
    return Rendered(stages=[Stage(name=req.evaluation, command=TRAIN_COMMAND, config=config, hub=model.hub)])
