"""Render a deployment: the inference YAML of `llamafactory-cli api`, served as one stage until stopped or idle."""

from __future__ import annotations

import msgspec

from services.common.contracts import ServeOptions

from ..jobs.schemas import DeployRequest
from .common import (
    BASE_TEMPLATES,
    SERVE_COMMAND,
    ModelPaths,
    Rendered,
    Stage,
    deep_merge,
    merge_overrides,
    model_keys,
)
from .overrides import check_overrides


def render_deploy(
    req: DeployRequest, *, model: ModelPaths, startup_timeout_s: float, idle_timeout_s: float
) -> Rendered:
    """The inference YAML of `llamafactory-cli api`: model (an adapter on its base), template, generation
    defaults, then overrides; served as one stage that runs until stopped or idle."""
    check_overrides(req.config_overrides, parser="infer", form=req)
    on_gpu = req.gpu_count > 0
    fields = {"template": req.template or model.template, **msgspec.to_builtins(req.generation)}
    config = merge_overrides(deep_merge(BASE_TEMPLATES["deploy"], fields), req.config_overrides, on_gpu)
    config.update(model_keys(model), trust_remote_code=False)
    return Rendered(
        stages=[
            Stage(
                name="serve",
                command=SERVE_COMMAND,
                config=config,
                hub=model.hub,
                serve=ServeOptions(startup_timeout_s=startup_timeout_s, idle_timeout_s=idle_timeout_s),
            )
        ]
    )
