"""What the gateway asks the services, with the caller's own credential, before it relays a chat: the scheduler
(which deployments are the caller's, and ready) and the registry (which adapters the caller may use). Answers are
cached per credential for a second, so a burst of chat requests costs each service one lookup."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
from litestar import Request

from .openai_shape import OpenAIError, unknown_model
from .replicas import REPLICAS

CACHE_S = 1.0
CACHE_MAX = 10_000
DEPLOYMENT_PREFIX = "dep_"
# services.common.security.new_id("dep"): anything else names no deployment, and is never sent on.
DEPLOYMENT_ID = re.compile(r"dep_[0-9a-f]{16}")


class Cache:
    """Answers kept for `CACHE_S`, emptied when it grows past CACHE_MAX keys."""

    def __init__(self) -> None:
        self._items: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> tuple[bool, Any]:
        hit = self._items.get(key)
        if hit and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None

    def put(self, key: Any, value: Any) -> None:
        if len(self._items) > CACHE_MAX:
            self._items.clear()
        self._items[key] = (time.monotonic() + CACHE_S, value)


class Upstream:
    """GETs to one service's replicas with the caller's credential, cached per credential, path and parameters."""

    def __init__(self, http: httpx.AsyncClient, urls: Sequence[str], service: str) -> None:
        self.http, self.urls, self.service = http, tuple(urls), service
        self._cache = Cache()

    async def _ask(self, path: str, params: dict | None, authorization: str) -> httpx.Response:
        """GET from the service, from the next replica when one cannot be reached (services/gateway/replicas.py)."""
        urls = REPLICAS.order(self.urls)
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
        found, result = self._cache.get(key)
        if found:
            return result
        try:
            response = await self._ask(path, params, key[0])
        except httpx.TransportError as exc:  # only an outage says so, never a request it could not build
            raise OpenAIError(
                503,
                f"the {self.service} is not reachable; retry shortly",
                "service_unavailable",
                kind="server_error",
                headers={"Retry-After": "2"},
            ) from exc
        result = (response.status_code, response.json() if response.content else None)
        self._cache.put(key, result)
        return result


def _failed(status: int, body: Any) -> OpenAIError:
    return OpenAIError(status, (body or {}).get("error", {}).get("message", "lookup failed"), "lookup_failed")


class Deployments(Upstream):
    """What the scheduler says about the caller's deployments."""

    def __init__(self, http: httpx.AsyncClient, scheduler_urls: Sequence[str]) -> None:
        super().__init__(http, scheduler_urls, "scheduler")

    async def one(self, request: Request, deployment_id: str) -> dict:
        status, body = 404, {}
        if DEPLOYMENT_ID.fullmatch(deployment_id):
            status, body = await self._get(request, f"/api/deployments/{quote(deployment_id, safe='')}")
        if status == 404:
            raise OpenAIError(
                404, f"The model {deployment_id!r} does not exist or is not yours", "model_not_found", "model"
            )
        if status != 200:
            raise _failed(status, body)
        return body

    async def active(self, request: Request) -> list[dict]:
        """The caller's deployments that are queued, starting, ready or stopping."""
        status, body = await self._get(request, "/api/deployments", {"active": "true", "limit": "200"})
        if status != 200:
            raise _failed(status, body)
        return body["items"]

    async def ready(self, request: Request) -> list[dict]:
        return [d for d in await self.active(request) if d["state"] == "ready"]

    async def by_name(self, request: Request, name: str) -> dict | None:
        """The one ready deployment serving model `name` (None when none does); 400 when several do."""
        matches = [d for d in await self.ready(request) if d["model"] == name]
        if len(matches) > 1:
            raise OpenAIError(
                400,
                f"several of your deployments serve '{name}': name one by id ({', '.join(d['id'] for d in matches)})",
                "ambiguous_model",
                "model",
            )
        return matches[0] if matches else None

    async def resolve(self, request: Request, name: str) -> dict:
        """A deployment by id, or by model name when exactly one of the caller's ready ones serves it."""
        if name.startswith(DEPLOYMENT_PREFIX):
            return await self.one(request, name)
        found = await self.by_name(request, name)
        if found is None:
            raise unknown_model(name)
        return found


class RegistryModels(Upstream):
    """What the registry's GET /api/models lists for the caller."""

    def __init__(self, http: httpx.AsyncClient, registry_urls: Sequence[str]) -> None:
        super().__init__(http, registry_urls, "registry")

    async def adapters_of(self, request: Request, base: str) -> list[dict]:
        """The LoRA adapters of model `base` the caller may deploy, i.e. chat with on a deployment of `base`."""
        params = {"kind": "lora", "base": base, "retired": "false", "limit": "200"}
        status, body = await self._get(request, "/api/models", params)
        if status != 200:
            raise _failed(status, body)
        return [m for m in body["items"] if m.get("base_model") == base and "deploy" in m.get("usable_for", ())]
