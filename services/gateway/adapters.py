"""Chat with a LoRA adapter by its registry name, on a deployment of its base (issue 17).

A `model` that names none of the caller's deployments is asked of the registry (`ModelUseAsked`, use "deploy",
with the caller's user id): when it is an adapter the caller may use and one of the caller's ready deployments on
an engine that pools adapters (vLLM) serves its base, the request goes there with the adapter in `Llmct-Adapter`.
The registry's no is the same 404 as an unknown model: nobody learns that someone else's adapter exists. The
agent trusts these headers because only the services' NATS user may publish to a deployment's subject
(services/common/nats_auth.py); a client's own headers are never passed on.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Annotated

import msgspec
from litestar import Request
from nats.aio.client import Client

from services.common.contracts import AdapterRef, ChatFrames, JobInput, ModelForUse, ModelUseAsked, Subjects
from services.common.errors import ApiError
from services.common.requests import ask

from .lookups import Cache
from .openai_shape import OpenAIError

POOLING_ENGINE = "vllm"  # the engine that loads adapters at run time; LLaMA-Factory's server serves one model
NAME_MAX = 256  # longer than any registry name: not worth a question
NOT_READY_RETRY_S = 5
OWNER = "llm-cloud-trainer"


class AdapterRights:
    """The registry's answer to "may this caller use model `name` for a deployment", cached per credential and name
    for a second (a refusal too: asking again for a name that was refused costs the registry nothing)."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._cache = Cache()

    async def usable(self, request: Request, user_id: str, name: str) -> ModelForUse | None:
        """The model as the registry gives it for use, or None when the caller may not use it (or it is unknown)."""
        if len(name) > NAME_MAX:
            return None
        key = (request.headers.get("authorization", ""), name)
        found, model = self._cache.get(key)
        if found:
            return model
        asked = ModelUseAsked(user_id=user_id, name=name, use="deploy")
        try:
            model = await ask(self.nc, Subjects.MODEL_FOR_USE, asked, ModelForUse, owner="registry")
        except ApiError as exc:
            if exc.status >= 500:
                raise OpenAIError(
                    503, exc.message, "service_unavailable", kind="server_error", headers={"Retry-After": "2"}
                ) from None
            model = None
        self._cache.put(key, model)
        return model


def adapter_of(model: ModelForUse | None) -> ModelForUse | None:
    """`model` when it is a LoRA adapter with a known base (an answer without `base` is no adapter to pool)."""
    if model is not None and model.kind == "lora" and model.base and model.adapter_path:
        return model
    return None


def pools_adapters(deployment: dict) -> bool:
    return deployment.get("engine") == POOLING_ENGINE


def _busy(deployment: dict) -> int:
    load = deployment.get("load") or {}
    return int(load.get("running") or 0) + int(load.get("waiting") or 0)


def deployment_for_adapter(name: str, adapter: ModelForUse, active: list[dict]) -> dict:
    """The caller's ready deployment to send a chat with `adapter` to: one of its base on vLLM, the least busy;
    503 while one of its base is still starting, 400 when its base is served only by an engine without adapter
    pools, 404 when its base is not deployed."""
    on_base = [d for d in active if d["model"] == adapter.base]
    pooled = [d for d in on_base if d["state"] == "ready" and pools_adapters(d)]
    if pooled:
        return min(pooled, key=_busy)
    starting = [d for d in on_base if d["state"] in ("queued", "starting")]
    if starting:
        raise OpenAIError(
            503,
            f"deployment {starting[0]['id']} of '{adapter.base}' is {starting[0]['state']}: retry in a few seconds",
            "model_not_ready",
            "model",
            kind="server_error",
            headers={"Retry-After": str(NOT_READY_RETRY_S)},
        )
    if any(d["state"] == "ready" for d in on_base):
        raise not_pooled(name, adapter.base or "")
    raise OpenAIError(
        404,
        f"'{name}' is an adapter of '{adapter.base}', which you have not deployed: deploy its base "
        f"'{adapter.base}' (engine vllm) to chat with it",
        "model_not_found",
        "model",
    )


def not_pooled(name: str, base: str) -> OpenAIError:
    return OpenAIError(
        400,
        f"'{name}' is a LoRA adapter and your deployment of '{base}' runs on an engine that cannot load adapters: "
        f"deploy '{base}' with engine vllm to chat with its adapters",
        "adapters_not_supported",
        "model",
    )


def check_adapter_on(deployment: dict, name: str, model: ModelForUse | None) -> ModelForUse:
    """The playground's `adapter` on one deployment: an adapter the caller may use, of the deployment's model, which
    the deployment's engine can load. Raised in the platform's envelope, naming `adapter`."""
    adapter = adapter_of(model)
    if adapter is None:
        raise ApiError(404, "not_found", f"adapter {name!r} not found: pick one of GET .../adapters", "adapter")
    if adapter.base != deployment["model"]:
        raise ApiError(
            400,
            "adapter_not_of_base",
            f"adapter {name!r} was trained on {adapter.base!r}, not on this deployment's {deployment['model']!r}",
            "adapter",
        )
    if not pools_adapters(deployment):
        error = not_pooled(name, adapter.base or "")
        raise ApiError(error.status, error.code, error.message, "adapter")
    return adapter


def adapter_files(adapter: ModelForUse, storage_base: Path) -> list[JobInput]:
    """`objects` mode: the adapter's own files among the registry's inputs (which hold its base's too: the deployment
    has the base loaded already). Each input's path is relative to the storage base, as is the adapter's folder there;
    when none matches, all of them, so that nothing the agent needs is left out."""
    folder = PurePosixPath(adapter.adapter_path or "")
    if not folder.is_relative_to(storage_base.as_posix()):
        return list(adapter.inputs)
    prefix = folder.relative_to(storage_base.as_posix()).as_posix() + "/"
    own = [item for item in adapter.inputs if item.path.startswith(prefix)]
    return own or list(adapter.inputs)


def chat_headers(user_id: str, adapter: ModelForUse | None, storage_base: Path) -> dict[str, str]:
    """The NATS headers of a chat request: who asks, and the adapter it names (its rights already checked)."""
    headers = {ChatFrames.USER: user_id}
    if adapter is not None:
        inputs = adapter_files(adapter, storage_base)
        ref = AdapterRef(name=adapter.name, adapter_path=adapter.adapter_path or "", inputs=inputs)
        headers[ChatFrames.ADAPTER] = msgspec.json.encode(ref).decode()
    return headers


def timestamp(value: str) -> int:
    return int(datetime.fromisoformat(value).timestamp())


def deployment_entry(deployment: dict) -> dict:
    """A ready deployment in /v1/models."""
    return {
        "id": deployment["id"],
        "object": "model",
        "created": timestamp(deployment["ready_at"] or deployment["created_at"]),
        "owned_by": OWNER,
        "root": deployment["model"],
        "parent": None,
    }


def adapter_entries(deployment: dict, adapters: list[dict]) -> list[dict]:
    """The adapters one can chat with on `deployment` (the registry's models), in /v1/models."""
    return [
        {
            "id": model["name"],
            "object": "model",
            "created": timestamp(model["created_at"]),
            "owned_by": model.get("owner") or OWNER,
            "root": deployment["model"],
            "parent": deployment["id"],
        }
        for model in adapters
    ]


class AdapterChoice(msgspec.Struct, kw_only=True):
    """An adapter one can chat with on a deployment (the playground's picker)."""

    name: Annotated[str, msgspec.Meta(description="the adapter's registry name: `model` in a chat, `adapter` here")]
    owner: Annotated[str | None, msgspec.Meta(description="its owner's user name; null for a preset")]
    loaded: Annotated[bool, msgspec.Meta(description="the engine holds it now: a chat with it waits for no load")]


def choices_on(deployment: dict, adapters: list[dict]) -> list[AdapterChoice]:
    """The adapters of `deployment`'s base one can chat with there, marked loaded when its engine holds them."""
    if deployment["state"] != "ready" or not pools_adapters(deployment):
        return []
    loaded = {a["name"] for a in (deployment.get("load") or {}).get("adapters") or ()}
    return [AdapterChoice(name=m["name"], owner=m.get("owner"), loaded=m["name"] in loaded) for m in adapters]
