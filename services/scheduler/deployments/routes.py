"""Deployments: a model served on an agent by vLLM or `llamafactory-cli api`, scheduled as a job of kind 'deploy'.

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

from services.common.contracts import TERMINAL_JOB_STATES
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
from .views import DeploymentOut, DeploymentPage, public_state, to_out


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
    await service.check_engine(pool, req.engine, settings)
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
            adapter_slots=req.adapter_slots,
            max_in_flight=req.max_in_flight,
            max_queue=req.max_queue,
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


async def _out(conn, principal: Principal, deployment_id: str) -> DeploymentOut:
    """The deployment as the caller sees it, with its usage; 404 unless theirs (or the caller is an admin)."""
    row = await _owned(conn, principal, deployment_id)
    usage = await dstore.usage_of(conn, [deployment_id])
    return to_out(row, principal.is_admin, usage=usage.get(deployment_id))


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
            out = await _out(conn, principal, deployment_id)
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
            usage = await dstore.usage_of(conn, [r["id"] for r in rows[:limit]])
        now = datetime.now(UTC)
        return DeploymentPage(
            items=[to_out(r, principal.is_admin, now, usage.get(r["id"])) for r in rows[:limit]],
            next_cursor=next_cursor(rows, limit),
        )

    @get("/{deployment_id:str}", summary="A deployment: state, idle time left, usage")
    async def detail(self, pool: asyncpg.Pool, principal: Principal, deployment_id: str) -> DeploymentOut:
        async with pool.acquire() as conn:
            return await _out(conn, principal, deployment_id)

    @post("/{deployment_id:str}/stop", status_code=202, summary="Stop a deployment (owner or admin)")
    async def stop(self, pool: asyncpg.Pool, nc: Client, principal: Principal, deployment_id: str) -> DeploymentOut:
        row = await _owned(pool, principal, deployment_id)
        if row["job_state"] in TERMINAL_JOB_STATES:
            raise ApiError(409, "deployment_stopped", f"the deployment already ended ({public_state(row)})")
        await service.cancel(pool, nc, principal, deployment_id)
        async with pool.acquire() as conn:
            return await _out(conn, principal, deployment_id)

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
