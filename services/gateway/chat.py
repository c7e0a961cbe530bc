"""Chat with deployments: the playground route and an OpenAI-compatible surface, relayed over NATS.

`POST /api/deployments/{id}/chat` (the web client's), `GET /v1/models` and `POST /v1/chat/completions`
(the official `openai` client works with `base_url=<gateway>/v1` and an API key or token). The gateway
asks the scheduler, with the caller's own credentials, whether the deployment is theirs and ready (cached
for a second), then sends the request as a core NATS request to `deploy.<agent_id>.<deployment_id>.chat` and
streams the agent's frames back (services/agent/serving.py has the framing). /v1 errors keep OpenAI's shape.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import msgspec
from litestar import Request, Response, get, post
from litestar.exceptions import NotAuthorizedException
from litestar.response import Stream
from nats.aio.client import Client

from services.common.contracts import ChatFrames, Subjects
from services.common.dependencies import Injected
from services.common.errors import ApiError
from services.common.security import authenticate

from .chat_content import FetchRefused, allowed_prefixes, check_messages
from .limits import BodyCut, paced
from .replicas import REPLICAS
from .settings import GatewaySettings

CACHE_S = 1.0
FIRST_FRAME_TIMEOUT_S = 120.0
NEXT_FRAME_TIMEOUT_S = 300.0
NOT_READY_RETRY_S = 5
# services.common.security.new_id("dep"): anything else names no deployment, and is never sent on.
DEPLOYMENT_ID = re.compile(r"dep_[0-9a-f]{16}")


class OpenAIError(Exception):
    """An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.kind = status, message, code, param, kind
        self.headers = headers or {}

    def response(self) -> Response:
        return Response(
            {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}},
            status_code=self.status,
            headers=self.headers,
        )


class PlaygroundChat(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A playground turn: the conversation so far; generation settings override the deployment's defaults."""

    messages: Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1, max_length=512)]
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=32_768)] | None = None
    stream: bool = True


class Deployments:
    """What the scheduler says about the caller's deployments, cached per credential for a second."""

    def __init__(self, http: httpx.AsyncClient, scheduler_urls: Sequence[str]) -> None:
        self.http, self.scheduler_urls = http, tuple(scheduler_urls)
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}

    async def _ask(self, path: str, params: dict | None, authorization: str) -> httpx.Response:
        """GET from the scheduler, from the next replica when one cannot be reached (services/gateway/replicas.py)."""
        urls = REPLICAS.order(self.scheduler_urls)
        for url in urls[:-1]:
            try:
                response = await self.http.get(url + path, params=params, headers={"authorization": authorization})
            except (httpx.ConnectError, httpx.ConnectTimeout):
                REPLICAS.unreachable(url)
                continue
            REPLICAS.reached(url)
            return response
        return await self.http.get(urls[-1] + path, params=params, headers={"authorization": authorization})

    async def _get(self, request: Request, path: str, params: dict | None = None) -> tuple[int, Any]:
        key = (request.headers.get("authorization", ""), path + repr(sorted((params or {}).items())))
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit and hit[0] > now:
            return hit[1]
        try:
            response = await self._ask(path, params, key[0])
        except httpx.TransportError as exc:  # only an outage says so, never a request it could not build
            raise OpenAIError(
                503,
                "the scheduler is not reachable; retry shortly",
                "service_unavailable",
                kind="server_error",
                headers={"Retry-After": "2"},
            ) from exc
        result = (response.status_code, response.json() if response.content else None)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now + CACHE_S, result)
        return result

    async def one(self, request: Request, deployment_id: str) -> dict:
        status, body = 404, {}
        if DEPLOYMENT_ID.fullmatch(deployment_id):
            status, body = await self._get(request, f"/api/deployments/{quote(deployment_id, safe='')}")
        if status == 404:
            raise OpenAIError(
                404, f"The model {deployment_id!r} does not exist or is not yours", "model_not_found", "model"
            )
        if status != 200:
            raise OpenAIError(status, (body or {}).get("error", {}).get("message", "lookup failed"), "lookup_failed")
        return body

    async def ready(self, request: Request) -> list[dict]:
        status, body = await self._get(request, "/api/deployments", {"active": "true", "limit": "200"})
        if status != 200:
            raise OpenAIError(status, (body or {}).get("error", {}).get("message", "lookup failed"), "lookup_failed")
        return [d for d in body["items"] if d["state"] == "ready"]

    async def resolve(self, request: Request, name: str) -> dict:
        """A deployment by id, or by model name when exactly one of the caller's ready ones serves it."""
        if name.startswith("dep_"):
            return await self.one(request, name)
        matches = [d for d in await self.ready(request) if d["model"] == name]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise OpenAIError(
                400,
                f"several of your deployments serve '{name}': name one by id ({', '.join(d['id'] for d in matches)})",
                "ambiguous_model",
                "model",
            )
        raise OpenAIError(
            404,
            f"The model '{name}' does not exist or is not deployed by you: GET /v1/models lists yours",
            "model_not_found",
            "model",
        )


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


async def relay(nc: Client, deployment: dict, body: bytes, stream: bool) -> Response:
    """Send the request to the agent hosting the deployment and answer with what it streams back."""
    deployment_id = deployment["id"]
    inbox = nc.new_inbox()
    frames: asyncio.Queue = asyncio.Queue()
    sub = await nc.subscribe(inbox, cb=frames.put)
    try:
        await nc.publish(Subjects.deploy_chat(deployment["agent_id"], deployment_id), body, reply=inbox)
        async with asyncio.timeout(FIRST_FRAME_TIMEOUT_S):
            first = await frames.get()
    except TimeoutError:
        await sub.unsubscribe()
        raise OpenAIError(504, "the model server did not answer in time", "timeout", kind="server_error") from None
    except BaseException:
        await sub.unsubscribe()
        raise
    headers = first.headers or {}
    if headers.get("Status") == "503":  # NATS: no responders, the agent no longer serves it
        await sub.unsubscribe()
        raise OpenAIError(
            503,
            f"deployment {deployment_id} is not being served right now: retry shortly",
            "model_not_ready",
            "model",
            kind="server_error",
            headers={"Retry-After": str(NOT_READY_RETRY_S)},
        )
    status = int(headers.get(ChatFrames.STATUS, "502"))
    media_type = headers.get("Content-Type", "application/json")

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
    return Response(data, status_code=status, media_type=media_type)


async def _caller(request: Request) -> None:
    try:
        request.state.principal = await authenticate(request)
    except NotAuthorizedException as exc:
        raise OpenAIError(401, exc.detail, "invalid_api_key", headers={"WWW-Authenticate": "Bearer"}) from None


def _openai_errors(handler):
    """Answer OpenAIError (and anything unexpected) in OpenAI's shape. The handler's signature is kept (wraps), so
    Litestar injects what it names."""

    @functools.wraps(handler)
    async def wrapped(**kwargs: Any) -> Response:
        try:
            return await handler(**kwargs)
        except OpenAIError as exc:
            return exc.response()

    return wrapped


@get("/v1/models", opt={"public": True}, tags=["openai"], summary="OpenAI: the caller's ready deployments")
@_openai_errors
async def list_models(request: Request, deployments: Deployments) -> Response:
    await _caller(request)
    items = await deployments.ready(request)
    data = [
        {
            "id": d["id"],
            "object": "model",
            "created": int(_timestamp(d["ready_at"] or d["created_at"])),
            "owned_by": "llm-cloud-trainer",
            "root": d["model"],
        }
        for d in items
    ]
    return Response({"object": "list", "data": data})


@post(
    "/v1/chat/completions",
    opt={"public": True},
    tags=["openai"],
    summary="OpenAI: chat with a deployment (stream or not); `model` is a deployment id or a deployed model's name",
)
@_openai_errors
async def chat_completions(
    request: Request, deployments: Deployments, nc: Client, settings: Injected[GatewaySettings]
) -> Response:
    await _caller(request)
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
    deployment = await deployments.resolve(request, body["model"])
    check_ready(deployment)
    return await relay(nc, deployment, raw, bool(body.get("stream")))


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
    deployments: Deployments,
    nc: Client,
    settings: Injected[GatewaySettings],
    deployment_id: str,
    data: PlaygroundChat,
) -> Response:
    try:
        check_messages(data.messages, allowed_prefixes(settings.chat_url_allow))
    except FetchRefused as exc:
        raise ApiError(422, "url_not_allowed", str(exc), exc.field) from None
    try:
        deployment = await deployments.one(request, deployment_id)
        check_ready(deployment)
        body = {k: v for k, v in msgspec.to_builtins(data).items() if v is not None}
        answer = await relay(nc, deployment, msgspec.json.encode({"model": deployment_id, **body}), data.stream)
    except OpenAIError as exc:
        code = {"model_not_found": "not_found"}.get(exc.code, exc.code)
        message = "deployment not found" if exc.status == 404 else exc.message
        raise ApiError(exc.status, code, message, headers=exc.headers) from None
    if (answer.status_code or 200) >= 400:  # the model server's error, in OpenAI's shape: told in the platform's
        raise platform_error(answer.status_code or 502, answer.content)
    return answer


def platform_error(status: int, content: bytes) -> ApiError:
    """An error the model server (or its agent) answered, in the platform's envelope; a 5xx as 502: it is the
    model server's failure, not the gateway's."""
    answered, status = status, status if status < 500 else 502
    try:
        error = msgspec.json.decode(content)["error"]
        code, message, param = str(error["code"] or "upstream_error"), str(error["message"]), error.get("param")
    except (msgspec.DecodeError, KeyError, TypeError):
        code, message, param = "upstream_error", f"the model server answered HTTP {answered}", None
    return ApiError(status, code, message, param if isinstance(param, str) else None)


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


CHAT_HANDLERS = [list_models, chat_completions, playground_chat]
