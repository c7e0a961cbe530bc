"""Rendering: a job's LLaMA-Factory YAML, one module per job kind (train, evaluate, export, deploy) on a common base.

Each kind starts from its base template, adds the form's fields, then the user's `config_overrides` deep-merged
last, then the platform's paths, which nobody overrides. A job runs as one or more engine stages (`Stage`,
converted to the contract's `EngineStage` in one place: `Stage.to_engine`); all but a LoRA export with
quantisation have one. That one is two: merge the adapter into its base, then quantise the merge. Callers use the
names below (`rendering.render_train`, …), not the modules.
"""

from .common import (
    BENCHMARK_COMMAND,
    EXPORT_COMMAND,
    SERVE_COMMAND,
    TRAIN_COMMAND,
    ModelPaths,
    Rendered,
    Stage,
    deep_merge,
    engine_stages,
    model_hub,
    request_dict,
    stage_row,
    to_yaml,
)
from .deploy import render_deploy
from .evaluate import check_eval_request, render_eval
from .export import check_export_request, render_export
from .outputs import JobInputs, job_inputs, output_of
from .overrides import check_overrides
from .train import check_train_request, render_train, train_stages

__all__ = [
    "BENCHMARK_COMMAND",
    "EXPORT_COMMAND",
    "SERVE_COMMAND",
    "TRAIN_COMMAND",
    "JobInputs",
    "ModelPaths",
    "Rendered",
    "Stage",
    "job_inputs",
    "output_of",
    "check_eval_request",
    "check_export_request",
    "check_overrides",
    "check_train_request",
    "deep_merge",
    "engine_stages",
    "model_hub",
    "render_deploy",
    "render_eval",
    "render_export",
    "render_train",
    "request_dict",
    "stage_row",
    "to_yaml",
    "train_stages",
]
