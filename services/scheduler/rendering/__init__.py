"""Rendering: a job's LLaMA-Factory YAML (common.py). Callers use the names below (`rendering.render_train`, …)."""

from .common import (
    BENCHMARK_COMMAND,
    EXPORT_COMMAND,
    SERVE_COMMAND,
    TRAIN_COMMAND,
    ModelPaths,
    Rendered,
    Stage,
    check_eval_request,
    check_export_request,
    check_overrides,
    check_train_request,
    deep_merge,
    model_hub,
    render_deploy,
    render_eval,
    render_export,
    render_train,
    request_dict,
    to_yaml,
    train_stages,
)

__all__ = [
    "BENCHMARK_COMMAND", "EXPORT_COMMAND", "SERVE_COMMAND", "TRAIN_COMMAND", "ModelPaths", "Rendered", "Stage",
    "check_eval_request", "check_export_request", "check_overrides", "check_train_request", "deep_merge",
    "model_hub", "render_deploy", "render_eval", "render_export", "render_train", "request_dict", "to_yaml",
    "train_stages",
]
