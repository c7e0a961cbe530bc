"""Render a deployment: LLaMA-Factory's inference YAML (the agent turns it into vLLM's command line when vLLM serves),
served as one stage until stopped or idle, with the engine asked for and its limits (`ServeOptions`)."""

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


def serve_options(req: DeployRequest, *, startup_timeout_s: float, idle_timeout_s: float) -> ServeOptions:
    """How the stage serves: the engine asked for (the agent resolves `auto`), its adapter slots and limits."""
    return ServeOptions(
        startup_timeout_s=startup_timeout_s,
        idle_timeout_s=idle_timeout_s,
        engine=req.engine,
        adapter_slots=req.adapter_slots,
        max_lora_rank=req.max_lora_rank,
        max_in_flight=req.max_in_flight,
        max_queue=req.max_queue,
        max_model_len=req.max_model_len,
    )


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
                serve=serve_options(req, startup_timeout_s=startup_timeout_s, idle_timeout_s=idle_timeout_s),
            )
        ]
    )
