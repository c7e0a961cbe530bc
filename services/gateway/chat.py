"""Chat with deployments: the playground route and an OpenAI-compatible surface, relayed over NATS.

`POST /api/deployments/{id}/chat` and `GET /api/deployments/{id}/adapters` (the web client's), and
`POST /v1/chat/completions` (the official `openai` client works with `base_url=<gateway>/v1` and an API key or
token; /v1/models is services/gateway/models.py). The gateway asks the scheduler, with the caller's own credentials,
whether the deployment is theirs and ready (cached for a second; services/gateway/lookups.py), which registry model
an `ft:` name stands for (the fine-tuning job's), and the registry whether a `model` that names no deployment is an
adapter the caller may use (services/gateway/adapters.py), then sends the request as a core NATS
request to `deploy.<agent_id>.<deployment_id>.chat`, with who asks and the adapter in its headers, and streams the
agent's frames back (services/agent/serving.py has the framing). /v1 errors keep OpenAI's shape.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.response import Stream
from nats.aio.client import Client

from services.common.contracts import ChatFrames, ModelForUse, Subjects
from services.common.dependencies import Injected
from services.common.errors import ApiError
from services.common.security import Principal

from .adapters import (
    AdapterChoice,
    AdapterRights,
    adapter_of,
    chat_headers,
    check_adapter_on,
    choices_on,
    deployment_for_adapter,
    pools_adapters,
)
from .chat_content import FetchRefused, allowed_prefixes, check_messages
from .limits import BodyCut, paced
from .lookups import DEPLOYMENT_PREFIX, Deployments, FineTuningJobs, RegistryModels, is_fine_tuned
from .openai_shape import OpenAIError, openai_caller, openai_errors, unknown_model
from .settings import GatewaySettings

FIRST_FRAME_TIMEOUT_S = 120.0
NEXT_FRAME_TIMEOUT_S = 300.0
NOT_READY_RETRY_S = 5


class PlaygroundChat(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A playground turn: the conversation so far; generation settings override the deployment's defaults."""

    messages: Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1, max_length=512)]
    adapter: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=256,
                description="a LoRA adapter of the deployment's model to chat with, by its registry name "
                "(GET /api/deployments/{id}/adapters lists them) or its fine-tuning job's `ft:` name; none: the "
                "model itself",
            ),
        ]
        | None
    ) = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=32_768)] | None = None
    stream: bool = True


def check_ready(deployment: dict) -> None:
    state = deployment["state"]
    if state == "ready":
        return
    if state in ("queued", "starting"):
        raise OpenAIError(
            503,
            f"deployment {deployment['id']} is {state}: retry in a few seconds",
            "model_not_ready",
            "model",
            kind="server_error",
            headers={"Retry-After": str(NOT_READY_RETRY_S)},
        )
    raise OpenAIError(
        409, f"deployment {deployment['id']} is {state}: deploy the model again", "model_not_running", "model"
    )


async def relay(nc: Client, deployment: dict, body: bytes, stream: bool, headers: dict[str, str]) -> Response:
    """Send the request (with `headers`: chat_headers) to the agent hosting the deployment and answer with what it
    streams back."""
    deployment_id = deployment["id"]
    inbox = nc.new_inbox()
    frames: asyncio.Queue = asyncio.Queue()
    sub = await nc.subscribe(inbox, cb=frames.put)
    try:
        subject = Subjects.deploy_chat(deployment["agent_id"], deployment_id)
        await nc.publish(subject, body, reply=inbox, headers=headers)
        async with asyncio.timeout(FIRST_FRAME_TIMEOUT_S):
            first = await frames.get()
    except TimeoutError:
        await sub.unsubscribe()
        raise OpenAIError(504, "the model server did not answer in time", "timeout", kind="server_error") from None
    except BaseException:
        await sub.unsubscribe()
        raise
    first_headers = first.headers or {}
    if first_headers.get("Status") == "503":  # NATS: no responders, the agent no longer serves it
        await sub.unsubscribe()
        raise OpenAIError(
            503,
            f"deployment {deployment_id} is not being served right now: retry shortly",
            "model_not_ready",
            "model",
            kind="server_error",
            headers={"Retry-After": str(NOT_READY_RETRY_S)},
        )
    status = int(first_headers.get(ChatFrames.STATUS, "502"))
    media_type = first_headers.get("Content-Type", "application/json")
    answer_headers = retry_after(first_headers)

    async def frames_after_first() -> AsyncIterator[bytes]:
        try:
            message = first
            while not (message.headers or {}).get(ChatFrames.END):
                if message.data:
                    yield message.data
                async with asyncio.timeout(NEXT_FRAME_TIMEOUT_S):  # no task per frame, unlike wait_for
                    message = await frames.get()
        finally:
            await sub.unsubscribe()

    if stream and status == 200:
        return Stream(
            frames_after_first(),
            status_code=status,
            media_type=media_type,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    data = b"".join([chunk async for chunk in frames_after_first()])
    return Response(data, status_code=status, media_type=media_type, headers=answer_headers)


def retry_after(first_headers: dict) -> dict[str, str]:
    """`Retry-After` when the agent said when to come back (its deployment's queue is full: a 429)."""
    seconds = first_headers.get(ChatFrames.RETRY_AFTER, "")
    return {"Retry-After": seconds} if seconds.isdigit() else {}


async def chat_target(
    request: Request,
    deployments: Deployments,
    rights: AdapterRights,
    fine_tuned: FineTuningJobs,
    user_id: str,
    name: str,
) -> tuple[dict, ModelForUse | None]:
    """Where a chat naming `name` goes: a deployment by id, the one ready deployment serving `name`, or a deployment
    of the base of the adapter `name` (with the adapter). An `ft:` name stands for the registry model its fine-tuning
    job made, resolved as that name would be."""
    if name.startswith(DEPLOYMENT_PREFIX):
        return await deployments.one(request, name), None
    model = await fine_tuned.model_name(request, name) if is_fine_tuned(name) else name
    found = await deployments.by_name(request, model)
    if found is not None:
        return found, None
    adapter = adapter_of(await rights.usable(request, user_id, model))
    if adapter is None:
        raise unknown_model(name)
    return deployment_for_adapter(name, adapter, await deployments.active(request)), adapter


@post(
    "/v1/chat/completions",
    opt={"public": True},
    tags=["openai"],
    summary="OpenAI: chat with a deployment (stream or not); `model` is a deployment id, a deployed model's name, "
    "the name of a LoRA adapter of a model you deployed on vLLM, or the `ft:` name of a model you fine-tuned",
)
@openai_errors
async def chat_completions(
    request: Request,
    deployments: Deployments,
    adapter_rights: AdapterRights,
    fine_tuning_jobs: FineTuningJobs,
    nc: Client,
    settings: Injected[GatewaySettings],
) -> Response:
    principal = await openai_caller(request)
    try:  # a body that pauses too long frees the gateway, as on forwarded routes
        raw = b"".join([chunk async for chunk in paced(request.stream(), settings.body_idle_s)])
    except BodyCut as exc:
        raise OpenAIError(exc.status, exc.message, "request_timeout", headers={"Connection": "close"}) from None
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise OpenAIError(400, "the request body is not valid JSON", "invalid_json") from None
    if not isinstance(body, dict):
        raise OpenAIError(400, "the request body must be a JSON object", "invalid_json")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise OpenAIError(
            400, "`model` is required: a deployment id or a deployed model's name", "missing_model", "model"
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise OpenAIError(
            400, "`messages` must be a non-empty list of {role, content} objects", "invalid_messages", "messages"
        )
    try:
        check_messages(messages, allowed_prefixes(settings.chat_url_allow))
    except FetchRefused as exc:
        raise OpenAIError(422, str(exc), "url_not_allowed", exc.field) from None
    check_sampling(body)
    deployment, adapter = await chat_target(
        request, deployments, adapter_rights, fine_tuning_jobs, principal.user_id, body["model"]
    )
    check_ready(deployment)
    headers = chat_headers(principal.user_id, adapter, settings.storage.base)
    return await relay(nc, deployment, raw, bool(body.get("stream")), headers)


MAX_CHOICES = 8  # `n`: answers per request (one request may not take a model server's every slot)
# Sampling fields whose bad values the model server answers with a crash rather than a refusal: checked here.
_BOUNDS: dict[str, tuple[type | tuple[type, ...], float, float]] = {
    "n": (int, 1, MAX_CHOICES),
    "max_tokens": (int, 1, 32_768),
    "max_completion_tokens": (int, 1, 32_768),
    "temperature": ((int, float), 0, 2),
    "top_p": ((int, float), 0, 1),
}


def check_sampling(body: dict) -> None:
    """400 naming the field when `n`, a token limit, `temperature` or `top_p` is not a number in its range, or
    `tools` is not a list of objects (OpenAI's own bounds; `n` at most MAX_CHOICES)."""
    for name, (kind, low, high) in _BOUNDS.items():
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
            want = "a whole number" if kind is int else "a number"
            raise OpenAIError(400, f"`{name}` must be {want} from {low} to {high}", "invalid_value", name)
    tools = body.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        raise OpenAIError(400, "`tools` must be a list of tool objects", "invalid_value", "tools")


@post(
    "/api/deployments/{deployment_id:str}/chat",
    tags=["deployments"],
    summary="Chat with one of your deployments (the playground): server-sent events when stream is true",
)
async def playground_chat(
    request: Request,
    principal: Principal,
    deployments: Deployments,
    adapter_rights: AdapterRights,
    fine_tuning_jobs: FineTuningJobs,
    nc: Client,
    settings: Injected[GatewaySettings],
    deployment_id: str,
    data: PlaygroundChat,
) -> Response:
    try:
        check_messages(data.messages, allowed_prefixes(settings.chat_url_allow))
    except FetchRefused as exc:
        raise ApiError(422, "url_not_allowed", str(exc), exc.field) from None
    with platform_envelope():
        deployment = await deployments.one(request, deployment_id)
        check_ready(deployment)
        adapter = None
        if data.adapter is not None:
            name = await adapter_name(request, fine_tuning_jobs, data.adapter)
            model = await adapter_rights.usable(request, principal.user_id, name)
            adapter = check_adapter_on(deployment, data.adapter, model)
        body = {k: v for k, v in msgspec.to_builtins(data).items() if v is not None and k != "adapter"}
        body["model"] = adapter.name if adapter else deployment_id
        headers = chat_headers(principal.user_id, adapter, settings.storage.base)
        answer = await relay(nc, deployment, msgspec.json.encode(body), data.stream, headers)
    if (answer.status_code or 200) >= 400:  # the model server's error, in OpenAI's shape: told in the platform's
        raise platform_error(answer.status_code or 502, answer.content, answer.headers)
    return answer


async def adapter_name(request: Request, fine_tuning_jobs: FineTuningJobs, name: str) -> str:
    """The playground's `adapter` by its registry name: an `ft:` name's model, told as the adapter not found."""
    if not is_fine_tuned(name):
        return name
    try:
        return await fine_tuning_jobs.model_name(request, name)
    except OpenAIError as exc:
        if exc.status != 404:
            raise
        raise ApiError(404, "not_found", f"adapter {name!r} not found: {exc.message}", "adapter") from None


@contextlib.contextmanager
def platform_envelope() -> Iterator[None]:
    """A lookup's OpenAIError told in the platform's envelope (a 404: the deployment is not found)."""
    try:
        yield
    except OpenAIError as exc:
        code = {"model_not_found": "not_found"}.get(exc.code, exc.code)
        message = "deployment not found" if exc.status == 404 else exc.message
        raise ApiError(exc.status, code, message, headers=exc.headers) from None


@get(
    "/api/deployments/{deployment_id:str}/adapters",
    tags=["deployments"],
    summary="The LoRA adapters you can chat with on one of your deployments (its model's, yours and presets), and "
    "whether its engine holds each now; empty unless it is ready on vLLM",
)
async def deployment_adapters(
    request: Request, deployments: Deployments, registry_models: RegistryModels, deployment_id: str
) -> list[AdapterChoice]:
    with platform_envelope():
        deployment = await deployments.one(request, deployment_id)
        if deployment["state"] != "ready" or not pools_adapters(deployment):
            return []
        return choices_on(deployment, await registry_models.adapters_of(request, deployment["model"]))


def platform_error(status: int, content: bytes, headers: Any = None) -> ApiError:
    """An error the model server (or its agent) answered, in the platform's envelope; a 5xx as 502: it is the
    model server's failure, not the gateway's. A `Retry-After` it came with is kept."""
    answered, status = status, status if status < 500 else 502
    try:
        error = msgspec.json.decode(content)["error"]
        code, message, param = str(error["code"] or "upstream_error"), str(error["message"]), error.get("param")
    except (msgspec.DecodeError, KeyError, TypeError):
        code, message, param = "upstream_error", f"the model server answered HTTP {answered}", None
    kept = {"Retry-After": headers["Retry-After"]} if headers and "Retry-After" in headers else None
    return ApiError(status, code, message, param if isinstance(param, str) else None, headers=kept)


CHAT_HANDLERS = [chat_completions, playground_chat, deployment_adapters]
