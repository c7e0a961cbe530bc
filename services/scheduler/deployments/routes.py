"""Deployments: a model served by `llamafactory-cli api` on an agent, scheduled as a job of kind 'deploy'.

It holds its GPU (or CPU) slot while it lives. States people see, derived from the job's:
`queued` (pending) → `starting` (dispatched, or running before the server answered) → `ready` → `stopping`
(a stop was asked) → `stopped` (on request, or idle) | `failed` (with the reason and the server's last lines).
Chat never passes through here: the gateway sends it over NATS to the agent that hosts the deployment.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from litestar.response import Stream
from nats.aio.client import Client
from nats.js import JetStreamContext

from services.common.contracts import TERMINAL_JOB_STATES, DeploymentState
from services.common.dependencies import Injected
from services.common.errors import ApiError, not_found
from services.common.ranges import RESUMABLE
from services.common.security import Principal, new_id

from .. import rendering
from ..jobs import access, idempotency, memory, queue, service, store
from ..jobs.downloads import job_log
from ..jobs.fetches import fetches
from ..jobs.routes import cursor_after, next_cursor
from ..jobs.schemas import DeployRequest
from ..settings import SchedulerSettings
from . import store as dstore


class DeploymentOut(msgspec.Struct, kw_only=True):
    """A deployment as its owner sees it: never the server's host, port or the model's files."""

    id: str
    model: str
    state: str  # a contracts.DeploymentState (a plain string in the OpenAPI document, as before)
    reason: str | None
    message: str | None
    generation: dict
    gpu_count: int
    idle_timeout_s: int
    idle_seconds_left: float | None
    requests_served: int
    tokens_generated: int
    created_at: datetime
    ready_at: datetime | None
    last_request_at: datetime | None
    finished_at: datetime | None
    uptime_s: float | None
    agent_id: str | None  # the agent's name (as on jobs), never its address
    # admins only
    owner: str | None = None
    gpu_memory_mb: int | None = None


class DeploymentPage(msgspec.Struct, kw_only=True):
    items: list[DeploymentOut]
    next_cursor: str | None


def public_state(row) -> DeploymentState:
    job_state = row["job_state"]
    if job_state == "pending":
        return "queued"
    if job_state in ("dispatched", "running"):
        if row["cancel_requested"]:
            return "stopping"
        return "ready" if row["ready_at"] else "starting"
    return "failed" if job_state == "failed" else "stopped"


def to_out(row, admin_view: bool, now: datetime | None = None) -> DeploymentOut:
    now = now or datetime.now(UTC)
    state = public_state(row)
    left = None
    if state == "ready":
        since = row["last_request_at"] or row["ready_at"]
        left = round(max(0.0, row["idle_timeout_s"] - (now - since).total_seconds()), 1)
    end = row["finished_at"] or now
    uptime = round((end - row["ready_at"]).total_seconds(), 1) if row["ready_at"] else None
    extra = {}
    if admin_view:
        extra = {
            "owner": row["owner"],
            "gpu_memory_mb": (row["estimate"] or {}).get("per_gpu_mb", 0) * max(row["gpu_count"], 1)
            if row["gpu_count"]
            else 0,
        }
    return DeploymentOut(
        id=row["id"],
        model=row["model"],
        state=state,
        reason=row["reason"],
        message=row["message"] if state in ("failed", "stopped") else None,
        generation=row["generation"],
        gpu_count=row["gpu_count"],
        idle_timeout_s=row["idle_timeout_s"],
        idle_seconds_left=left,
        requests_served=row["requests_served"],
        tokens_generated=row["tokens_generated"],
        created_at=row["created_at"],
        ready_at=row["ready_at"],
        last_request_at=row["last_request_at"],
        finished_at=row["finished_at"],
        uptime_s=uptime,
        agent_id=row["agent_id"],
        **extra,
    )


async def deploy(
    pool: asyncpg.Pool,
    nc: Client,
    js: JetStreamContext,
    settings: SchedulerSettings,
    principal: Principal,
    req: DeployRequest,
    submission: idempotency.Submission | None = None,
) -> str:
    """Check the model and the caller's limit, render the server's YAML, store the job and its deployment row (and the
    submission's answer and idempotency key, when given)."""
    model = await access.usable_model(nc, principal, req.model, "deploy", prefer_hub=settings.model_hub)
    idle = req.idle_timeout_s or settings.deploy_idle_s
    rendered = rendering.render_deploy(
        req, model=model.paths, startup_timeout_s=settings.deploy_startup_s, idle_timeout_s=idle
    )
    est = memory.estimate_inference(
        parameters=model.parameter_count or 7_000_000_000,
        batch_size=1,
        cutoff_len=rendered.config.get("max_new_tokens", req.generation.max_new_tokens),  # merged with overrides
        gpu_count=req.gpu_count,
        **memory.model_shape(model.paths.model_path),
    )
    await service.check_capacity(pool, req.gpu_count, est)
    job_id = new_id("dep")
    async with pool.acquire() as conn, conn.transaction():
        if submission is not None:
            await submission.claim(conn)
        await queue.check_priority(conn, principal, req.priority, settings)
        await dstore.lock_owner(conn, principal.user_id)
        active = await dstore.active_of(conn, principal.user_id)
        limit = (await queue.quotas(conn, [principal.user_id], settings))[principal.user_id].max_deployments
        if len(active) >= limit:
            names = ", ".join(f"{row['id']} ({row['model']}, {public_state(row)})" for row in active) or "none"
            raise ApiError(
                409,
                "deployment_limit",
                f"you may have {limit} active deployment(s) and have: {names}. Stop one first "
                "(POST /api/deployments/{id}/stop), or ask an admin to raise your limit",
            )
        config_yaml, stages = rendered.frozen()
        await store.insert_job(
            conn,
            job_id=job_id,
            owner_id=principal.user_id,
            kind="deploy",
            priority=req.priority,
            gpu_count=req.gpu_count,
            request=rendering.request_dict(req),
            config=rendered.config,
            config_yaml=config_yaml,
            stages=stages,
            output_dir=str(settings.storage.output / job_id),
            estimate=msgspec.to_builtins(est),
            fetches=fetches(settings, [model.inputs]),
        )
        await dstore.insert(
            conn,
            deployment_id=job_id,
            owner_id=principal.user_id,
            model=model.name,
            generation=msgspec.to_builtins(req.generation),
            idle_timeout_s=idle,
        )
        if submission is not None:
            await submission.record(conn, job_id)
    await service.announce_submitted(js, job_id, "deploy", principal.user_id, req.priority)
    return job_id


async def _owned(db, principal: Principal, deployment_id: str):
    """`db`: the pool, or a connection already held."""
    row = await dstore.get(db, deployment_id, None if principal.is_admin else principal.user_id)
    if row is None:
        raise not_found("deployment")
    return row


class DeploymentController(Controller):
    path = "/api/deployments"
    tags = ["deployments"]

    @post(
        "/",
        status_code=201,
        summary="Deploy a model (one active deployment per user unless raised)",
        response_headers=[idempotency.REPLAYED_HEADER],
    )
    async def create(
        self,
        pool: asyncpg.Pool,
        nc: Client,
        js: JetStreamContext,
        settings: Injected[SchedulerSettings],
        principal: Principal,
        data: DeployRequest,
        idempotency_key: idempotency.KeyHeader = None,
    ) -> Response[DeploymentOut]:
        async def answer(conn, deployment_id: str) -> idempotency.Answer:
            out = to_out(await _owned(conn, principal, deployment_id), principal.is_admin)
            return idempotency.Answer(201, msgspec.json.encode(out))

        submission = idempotency.Submission(principal, idempotency_key, "POST /api/deployments", data, answer)
        return await idempotency.created(
            pool, submission, lambda: deploy(pool, nc, js, settings, principal, data, submission)
        )

    @get("/", summary="The caller's deployments (admins: everyone's, with owner, agent and GPU memory)")
    async def list_deployments(
        self,
        pool: asyncpg.Pool,
        principal: Principal,
        active: Annotated[bool, Parameter(description="only queued, starting, ready or stopping ones")] = False,
        cursor: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> DeploymentPage:
        async with pool.acquire() as conn:
            rows = await dstore.list_for(
                conn,
                owner_id=None if principal.is_admin else principal.user_id,
                active_only=active,
                before=cursor_after(cursor),
                limit=limit + 1,
            )
        now = datetime.now(UTC)
        return DeploymentPage(
            items=[to_out(r, principal.is_admin, now) for r in rows[:limit]], next_cursor=next_cursor(rows, limit)
        )

    @get("/{deployment_id:str}", summary="A deployment: state, idle time left, usage")
    async def detail(self, pool: asyncpg.Pool, principal: Principal, deployment_id: str) -> DeploymentOut:
        return to_out(await _owned(pool, principal, deployment_id), principal.is_admin)

    @post("/{deployment_id:str}/stop", status_code=202, summary="Stop a deployment (owner or admin)")
    async def stop(self, pool: asyncpg.Pool, nc: Client, principal: Principal, deployment_id: str) -> DeploymentOut:
        row = await _owned(pool, principal, deployment_id)
        if row["job_state"] in TERMINAL_JOB_STATES:
            raise ApiError(409, "deployment_stopped", f"the deployment already ended ({public_state(row)})")
        await service.cancel(pool, nc, principal, deployment_id)
        return to_out(await _owned(pool, principal, deployment_id), principal.is_admin)

    @get(
        "/{deployment_id:str}/log",
        summary="The deployment's inference log as text (so far)",
        description=RESUMABLE,
    )
    async def log_file(
        self,
        request: Request,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        settings: Injected[SchedulerSettings],
        principal: Principal,
        deployment_id: str,
    ) -> Stream:
        row = await _owned(pool, principal, deployment_id)
        return await job_log(js, settings, deployment_id, row["job_state"], request.headers)
