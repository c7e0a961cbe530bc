"""What the gateway asks the services, with the caller's own credential, before it relays a chat: the scheduler
(which deployments are the caller's, and ready; which fine-tuning job an `ft:` name is) and the registry (which
adapters the caller may use; which model of theirs has a name). Answers are cached per credential for a second, so a
burst of chat requests costs each service one lookup."""

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

    async def _ask(self, method: str, path: str, params: dict | None, authorization: str) -> httpx.Response:
        """Ask the service, the next replica when one cannot be reached (services/gateway/replicas.py): a refused
        connection sent nothing, so even a DELETE is asked again."""
        urls = REPLICAS.order(self.urls)
        headers = {"authorization": authorization}
        for url in urls[:-1]:
            try:
                response = await self.http.request(method, url + path, params=params, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                REPLICAS.unreachable(url)
                continue
            REPLICAS.reached(url)
            return response
        return await self.http.request(method, urls[-1] + path, params=params, headers=headers)

    async def _get(self, request: Request, path: str, params: dict | None = None) -> tuple[int, Any]:
        key = (request.headers.get("authorization", ""), path + repr(sorted((params or {}).items())))
        found, result = self._cache.get(key)
        if found:
            return result
        result = await self._uncached(request, "GET", path, params)
        self._cache.put(key, result)
        return result

    async def _uncached(self, request: Request, method: str, path: str, params: dict | None = None) -> tuple[int, Any]:
        try:
            response = await self._ask(method, path, params, request.headers.get("authorization", ""))
        except httpx.TransportError as exc:  # only an outage says so, never a request it could not build
            raise OpenAIError(
                503,
                f"the {self.service} is not reachable; retry shortly",
                "service_unavailable",
                kind="server_error",
                headers={"Retry-After": "2"},
            ) from exc
        return response.status_code, response.json() if response.content else None


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

    async def own_named(self, request: Request, user_id: str, name: str) -> dict | None:
        """The model named exactly `name` that the caller owns, or a preset of that name; None when neither (someone
        else's model is none of theirs, even for an admin, who sees every model in the list). Never cached: what
        follows is a deletion."""
        params = {"q": name, "sort": "name", "order": "asc", "limit": "200"}
        status, body = await self._uncached(request, "GET", "/api/models", params)
        if status != 200:
            raise _failed(status, body)
        named = [m for m in body["items"] if m["name"] == name]
        own = [m for m in named if m.get("owner_id") == user_id and m["source"] != "preset"]
        return (own or [m for m in named if m["source"] == "preset"] or [None])[0]

    async def of_checkpoint(self, request: Request, job_id: str, step: int) -> dict | None:
        """The model the caller registered from job `job_id`'s checkpoint at `step` (POST /api/models/checkpoints);
        None when there is none (yet, or any more)."""
        params = {"job": job_id, "checkpoint_step": str(step), "limit": "1"}
        status, body = await self._get(request, "/api/models", params)
        if status != 200:
            raise _failed(status, body)
        found = [m for m in body["items"] if m.get("job_id") == job_id]
        return found[0] if found else None

    async def of_checkpoints(self, request: Request) -> list[dict]:
        """The caller's latest models registered from checkpoints (an admin's list holds everyone's: matched to the
        caller's own fine-tuning jobs by whoever lists them)."""
        status, body = await self._get(request, "/api/models", {"checkpoint": "true", "limit": "200"})
        if status != 200:
            raise _failed(status, body)
        return body["items"]

    async def delete(self, request: Request, model_id: str) -> tuple[int, Any]:
        """The registry's DELETE /api/models/{id}, with the caller's credential: its status and answer."""
        return await self._uncached(request, "DELETE", f"/api/models/{quote(model_id, safe='')}")


FTJOB_PREFIX = "ftjob-"
# An `ft:` name ends in its job's id without the prefix (the scheduler's `ftjob-` + 24 hex); a checkpoint's adds
# `:ckpt-step-<step>`. What comes between (base, owner, suffix) may hold colons: the job's own name is compared whole.
FT_NAME = re.compile(r"ft:.+:(?P<job>[0-9a-f]{24})(?::ckpt-step-(?P<step>[0-9]{1,9}))?")
JOBS_PAGE = 100  # OpenAI's largest `limit`
JOBS_PAGES_MAX = 10  # /v1/models lists the fine-tuned models of the caller's latest 1,000 jobs


def is_fine_tuned(name: str) -> bool:
    return name.startswith("ft:")


def names_checkpoint_of(job: dict, name: str, step: int) -> bool:
    """Whether `name` is exactly the name of `job`'s checkpoint at `step`: its `fine_tuned_model` and the step once
    it succeeded; before, its base, suffix and id (the owner's name between them is not told before)."""
    tail = f":ckpt-step-{step}"
    if job.get("fine_tuned_model"):
        return name == job["fine_tuned_model"] + tail
    ending = f":{job.get('user_provided_suffix') or ''}:{job['id'].removeprefix(FTJOB_PREFIX)}{tail}"
    prefix = f"ft:{job.get('model')}:"
    return name.startswith(prefix) and name.endswith(ending) and len(name) > len(prefix) + len(ending)


class FineTuningJobs(Upstream):
    """What the scheduler's /v1/fine_tuning/jobs says about the caller's fine-tuning jobs and the models they made;
    the registry, which model of the caller's a checkpoint of one of them was registered as."""

    def __init__(
        self, http: httpx.AsyncClient, scheduler_urls: Sequence[str], registry_urls: Sequence[str] = ()
    ) -> None:
        super().__init__(http, scheduler_urls, "scheduler")
        self.registry = RegistryModels(http, registry_urls)

    async def model_name(self, request: Request, name: str) -> str:
        """The registry name of the model the `ft:` name `name` stands for: the one the caller's fine-tuning job
        registered, or (`…:ckpt-step-<n>`) the one the caller registered from its checkpoint. 404 (model_not_found)
        for a name that is not exactly that job's `fine_tuned_model` (or its checkpoint's), a job that is not the
        caller's, and a model that is not (or no longer) registered."""
        match = FT_NAME.fullmatch(name)
        if match is None:
            raise unknown_model(name)
        status, job = await self._get(request, f"/v1/fine_tuning/jobs/{FTJOB_PREFIX}{match['job']}")
        if status == 404:
            raise unknown_model(name)
        if status != 200:
            raise _failed(status, job)
        if match["step"] is not None:
            return await self.checkpoint_model_name(request, job, name, int(match["step"]))
        if not job.get("fine_tuned_model"):  # the caller's own job, still at work (or it failed)
            raise OpenAIError(
                404,
                f"fine-tuning job {job['id']} is {job.get('status')}: its model is there once it has succeeded",
                "model_not_found",
                "model",
            )
        if job["fine_tuned_model"] != name:
            raise unknown_model(name)
        registered = (job.get("llmct") or {}).get("model_name")
        if not registered:
            raise OpenAIError(
                404,
                f"the model of fine-tuning job {job['id']} is not registered (yet, or any more): GET /v1/models "
                "lists yours",
                "model_not_found",
                "model",
            )
        return registered

    async def checkpoint_model_name(self, request: Request, job: dict, name: str, step: int) -> str:
        """The registry name of the model the caller registered from `job`'s checkpoint `name`; 404 naming how to
        register it when there is none."""
        if not names_checkpoint_of(job, name, step):
            raise unknown_model(name)
        job_id = (job.get("llmct") or {}).get("job_id")
        if not job_id:
            raise unknown_model(name)
        model = await self.registry.of_checkpoint(request, job_id, step)
        if model is None:
            raise OpenAIError(
                404,
                f"checkpoint '{name}' is not registered as a model: register it (POST /api/models/checkpoints "
                f'{{"job_id": "{job_id}", "step": {step}}}, or "Deploy" on the job\'s page), then deploy it; '
                f"GET /v1/fine_tuning/jobs/{job['id']}/checkpoints lists the job's checkpoints",
                "model_not_found",
                "model",
            )
        return model["name"]

    async def succeeded(self, request: Request) -> list[dict]:
        """The caller's fine-tuning jobs that made a model, of their latest JOBS_PAGE × JOBS_PAGES_MAX. None when the
        scheduler has no fine-tuning jobs to tell of (404), or not to this credential (403: an API key whose scope
        leaves fine-tuning out still lists its deployments)."""
        found: list[dict] = []
        params = {"limit": str(JOBS_PAGE)}
        for _ in range(JOBS_PAGES_MAX):
            status, body = await self._get(request, "/v1/fine_tuning/jobs", params)
            if status in (403, 404):
                return []
            if status != 200:
                raise _failed(status, body)
            page = body.get("data") or []
            found += [j for j in page if j.get("status") == "succeeded" and j.get("fine_tuned_model")]
            if not body.get("has_more") or not page:
                return found
            params = {"limit": str(JOBS_PAGE), "after": page[-1]["id"]}
        return found
