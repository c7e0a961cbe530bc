"""What the registry answers other services (NATS request/reply, services.common.requests).

`model_for_use`: may this user use model X for train, eval, export or deploy (the rule of rules.py), and
where are its files. A LoRA adapter comes with the base it was trained on, whose hub is the job's.
"""

from __future__ import annotations

from services.common.contracts import ModelForUse, ModelUseAsked, Subjects
from services.common.errors import ApiError
from services.common.lifecycle import Context
from services.common.requests import Endpoint

from . import rules, store


def model_for_job(model: rules.ModelRef, base: rules.ModelRef | None, prefer_hub: str) -> ModelForUse:
    """Where a job loads `model` from; a LoRA adapter (a local folder) is loaded on `base`."""
    if base is None:
        path, hub = model.loaded_from(prefer_hub)
        return ModelForUse(
            name=model.name,
            kind=model.kind,
            model_path=path,
            template=model.template,
            hub=hub,
            parameter_count=model.parameter_count,
        )
    path, hub = base.loaded_from(prefer_hub)
    return ModelForUse(
        name=model.name,
        kind=model.kind,
        model_path=path,
        adapter_path=model.location,
        template=model.template or base.template,
        hub=hub,
        parameter_count=base.parameter_count,
    )


async def model_for_use(context: Context, asked: ModelUseAsked) -> ModelForUse:
    """Answer a `ModelUseAsked`: the model and its files, or why the caller may not use it."""
    pool = context.pool
    model = await rules.model_for_use(pool, asked.user_id, asked.name, use=asked.use, field=asked.field)
    if model.kind != "lora":
        return model_for_job(model, None, asked.prefer_hub)
    base_row = await store.get(pool, model.base_model_id) if model.base_model_id else None
    if base_row is None:
        raise ApiError(
            422,
            "base_model_missing",
            f"the base model of adapter {asked.name!r} was deleted: the adapter cannot be loaded without it",
            asked.field,
        )
    return model_for_job(model, rules.ModelRef.from_row(base_row), asked.prefer_hub)


ENDPOINTS = (
    Endpoint(name="model_for_use", subject=Subjects.MODEL_FOR_USE, request=ModelUseAsked, handler=model_for_use),
)
