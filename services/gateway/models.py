"""OpenAI's models on the gateway: `GET /v1/models` (and one by id), `DELETE /v1/models/{id}`.

The list is the caller's ready deployments, the adapters each vLLM one serves (issue 17), and the models the caller's
fine-tuning jobs made, by their `ft:` names (issue 18; the scheduler's GET /v1/fine_tuning/jobs, asked with the
caller's credential), and their checkpoints the caller registered as models, by their `ft:…:ckpt-step-<n>` names (asked
of the registry's list). A fine-tuned adapter a deployment serves is listed twice: by its registry name (as an adapter
of that deployment) and by its `ft:` name, both with `parent` that deployment. Deleting asks the registry's
DELETE /api/models/{id}, with the caller's credential, for a model of the caller's own (named by its `ft:` name or
its registry name); a preset is refused (403), anything else reads as unknown (404). docs/openai.md tells the rest.
"""

from __future__ import annotations

from litestar import Request, Response, delete, get

from .adapters import OWNER, adapter_entries, deployment_entry, pools_adapters, timestamp
from .lookups import Deployments, FineTuningJobs, RegistryModels, is_fine_tuned
from .openai_shape import OpenAIError, openai_caller, openai_errors, unknown_model


def owner_in(job: dict) -> str:
    """The owner's user name in a job's `fine_tuned_model`, `ft:<base>:<owner>:<suffix>:<id>` (a user name may hold
    colons; the base is the job's `model`, the suffix has none, the id is the job's)."""
    name, base = job["fine_tuned_model"], job.get("model") or ""
    middle = name.removeprefix(f"ft:{base}:").rsplit(":", 1)[0]  # <owner>:<suffix>
    owner = middle.rsplit(":", 1)[0] if ":" in middle else ""
    return owner or OWNER


def finetuned_entries(jobs: list[dict], served: dict[str, str]) -> list[dict]:
    """The models the caller's succeeded fine-tuning jobs made, in /v1/models: `parent` the ready deployment that
    serves it (`served`: registry name -> deployment id), else null; `root` the model it was trained from."""
    entries = []
    for job in jobs:
        registered = (job.get("llmct") or {}).get("model_name")
        if job.get("status") != "succeeded" or not job.get("fine_tuned_model") or not registered:
            continue  # a model deleted since is no model any more
        entries.append(
            {
                "id": job["fine_tuned_model"],
                "object": "model",
                "created": job.get("finished_at") or job["created_at"],
                "owned_by": owner_in(job),
                "root": job.get("model"),
                "parent": served.get(registered),
            }
        )
    return entries


def checkpoint_entries(jobs: list[dict], models: list[dict], served: dict[str, str]) -> list[dict]:
    """The checkpoints of the caller's succeeded fine-tuning jobs that were registered as models (`models`), by their
    `ft:…:ckpt-step-<n>` names, in /v1/models: `parent` the ready deployment that serves it, else null."""
    by_job = {(job.get("llmct") or {}).get("job_id"): job for job in jobs if job.get("fine_tuned_model")}
    entries = []
    for model in models:
        job, step = by_job.get(model.get("job_id")), (model.get("details") or {}).get("checkpoint_step")
        if job is None or not isinstance(step, int):
            continue
        entries.append(
            {
                "id": f"{job['fine_tuned_model']}:ckpt-step-{step}",
                "object": "model",
                "created": timestamp(model["created_at"]),
                "owned_by": owner_in(job),
                "root": job.get("model"),
                "parent": served.get(model["name"]),
            }
        )
    return entries


async def models_of(
    request: Request, deployments: Deployments, registry_models: RegistryModels, fine_tuning_jobs: FineTuningJobs
) -> list[dict]:
    """What /v1/models lists for the caller."""
    data: list[dict] = []
    served: dict[str, str] = {}  # registry name -> the first ready deployment that serves it
    for deployment in await deployments.ready(request):
        data.append(deployment_entry(deployment))
        served.setdefault(deployment["model"], deployment["id"])
        if pools_adapters(deployment):
            adapters = await registry_models.adapters_of(request, deployment["model"])
            data += adapter_entries(deployment, adapters)
            for adapter in adapters:
                served.setdefault(adapter["name"], deployment["id"])
    jobs = await fine_tuning_jobs.succeeded(request)
    checkpoints = await registry_models.of_checkpoints(request) if jobs else []
    return data + finetuned_entries(jobs, served) + checkpoint_entries(jobs, checkpoints, served)


@get(
    "/v1/models",
    opt={"public": True},
    tags=["openai"],
    summary="OpenAI: the caller's ready deployments, the adapters each served by vLLM can chat with (`parent`: the "
    "deployment), and the models the caller's fine-tuning jobs made (and their checkpoints registered as models), by "
    "their `ft:` names",
)
@openai_errors
async def list_models(
    request: Request, deployments: Deployments, registry_models: RegistryModels, fine_tuning_jobs: FineTuningJobs
) -> Response:
    await openai_caller(request)
    return Response(
        {"object": "list", "data": await models_of(request, deployments, registry_models, fine_tuning_jobs)}
    )


@get(
    "/v1/models/{model_id:path}",
    opt={"public": True},
    tags=["openai"],
    summary="OpenAI: one model of GET /v1/models, by its id",
)
@openai_errors
async def retrieve_model(
    request: Request,
    deployments: Deployments,
    registry_models: RegistryModels,
    fine_tuning_jobs: FineTuningJobs,
    model_id: str,
) -> Response:
    await openai_caller(request)
    name = model_id.removeprefix("/")
    for entry in await models_of(request, deployments, registry_models, fine_tuning_jobs):
        if entry["id"] == name:
            return Response(entry)
    raise unknown_model(name)


@delete(
    "/v1/models/{model_id:path}",
    opt={"public": True},
    tags=["openai"],
    status_code=200,
    summary="OpenAI: delete one of your fine-tuned models (its `ft:` name or its registry name): the registry "
    "unregisters it (its files stay with its job); 409 while a model derives from it or an unfinished job uses it",
)
@openai_errors
async def delete_model(
    request: Request, registry_models: RegistryModels, fine_tuning_jobs: FineTuningJobs, model_id: str
) -> Response:
    principal = await openai_caller(request)
    name = model_id.removeprefix("/")
    registered = await fine_tuning_jobs.model_name(request, name) if is_fine_tuned(name) else name
    model = await registry_models.own_named(request, principal.user_id, registered)
    if model is None:
        raise unknown_model(name)
    if model["source"] == "preset":
        raise OpenAIError(
            403,
            f"'{name}' is a base model of the platform: only your own models are deleted here",
            "not_deletable",
            "model",
            kind="permission_error",
        )
    status, body = await registry_models.delete(request, model["id"])
    if status == 404:
        raise unknown_model(name)
    if status >= 300:
        error = (body or {}).get("error") or {}
        message = error.get("message") or f"the registry answered HTTP {status}"
        kind = "permission_error" if status == 403 else "invalid_request_error"
        raise OpenAIError(
            status if status < 500 else 502,
            message,
            error.get("code") or "delete_failed",
            "model",
            kind="server_error" if status >= 500 else kind,
        )
    return Response({"id": name, "object": "model", "deleted": True})


MODEL_HANDLERS = [list_models, retrieve_model, delete_model]
