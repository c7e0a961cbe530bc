"""HTTP routes of /v1/fine_tuning/jobs: OpenAI's fine-tuning API over our training jobs, errors in OpenAI's shape."""

from __future__ import annotations

from typing import Annotated

from asyncpg import Pool
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from nats.aio.client import Client
from nats.js import JetStreamContext

from services.common.dependencies import Injected
from services.common.errors import ApiError
from services.common.openai_errors import OPENAI_EXCEPTION_HANDLERS
from services.common.security import Principal

from ..jobs import idempotency
from ..settings import SchedulerSettings
from . import history, mapping, service, store
from .schemas import (
    FineTuningCheckpointPage,
    FineTuningEventPage,
    FineTuningJob,
    FineTuningJobCreate,
    FineTuningJobPage,
)

JobId = Annotated[str, Parameter(max_length=64)]
After = Annotated[str | None, Parameter(max_length=64, description="the last id of the page before")]


def metadata_filter(request: Request) -> dict[str, str]:
    """`metadata[k]=v` query parameters: jobs whose metadata holds every such pair."""
    pairs = {k[len("metadata[") : -1]: v for k, v in request.query_params.items() if k.startswith("metadata[")}
    if any(not k or not k.isprintable() or len(k) > 64 or len(v) > 512 for k, v in pairs.items()):
        raise ApiError(
            400, "invalid_metadata_filter", "filter as metadata[key]=value (key ≤ 64, value ≤ 512)", "metadata"
        )
    return pairs


class FineTuningController(Controller):
    path = "/v1/fine_tuning/jobs"
    tags = ["openai"]
    exception_handlers = OPENAI_EXCEPTION_HANDLERS  # pyright: ignore[reportAssignmentType]

    @post("/", status_code=200, summary="Create a fine-tuning job (OpenAI's API): a LoRA training job of ours")
    async def create(
        self,
        pool: Pool,
        nc: Client,
        js: JetStreamContext,
        settings: Injected[SchedulerSettings],
        principal: Principal,
        data: FineTuningJobCreate,
        idempotency_key: idempotency.KeyHeader = None,
    ) -> Response[FineTuningJob]:
        return await service.create(pool, nc, js, settings, principal, data, idempotency_key)

    @get("/", summary="The caller's fine-tuning jobs, newest first")
    async def list_jobs(
        self,
        request: Request,
        pool: Pool,
        principal: Principal,
        after: After = None,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
    ) -> FineTuningJobPage:
        # A results file missed at success is made on retrieve, not here: a page would wait on one ask per job.
        async with pool.acquire() as conn:
            rows = await store.page(conn, principal.user_id, after, limit + 1, metadata_filter(request))
        return FineTuningJobPage(data=[service.job_object(r) for r in rows[:limit]], has_more=len(rows) > limit)

    @get("/{ftjob_id:str}", summary="A fine-tuning job")
    async def retrieve(self, pool: Pool, nc: Client, principal: Principal, ftjob_id: JobId) -> FineTuningJob:
        return await service.one(pool, nc, principal, ftjob_id)

    @post("/{ftjob_id:str}/cancel", status_code=200, summary="Cancel a fine-tuning job")
    async def cancel(self, pool: Pool, nc: Client, principal: Principal, ftjob_id: JobId) -> FineTuningJob:
        return await service.one(pool, nc, principal, await service.cancel(pool, nc, principal, ftjob_id))

    @post(
        "/{ftjob_id:str}/pause",
        status_code=200,
        summary="Pause a fine-tuning job: stopped, its checkpoints kept; `paused` once it stopped",
    )
    async def pause(self, pool: Pool, nc: Client, principal: Principal, ftjob_id: JobId) -> FineTuningJob:
        return await service.one(pool, nc, principal, await service.pause(pool, nc, principal, ftjob_id))

    @post("/{ftjob_id:str}/resume", status_code=200, summary="Resume a paused fine-tuning job from its last checkpoint")
    async def resume(
        self,
        pool: Pool,
        nc: Client,
        js: JetStreamContext,
        settings: Injected[SchedulerSettings],
        principal: Principal,
        ftjob_id: JobId,
    ) -> FineTuningJob:
        await service.resume(pool, nc, js, settings, principal, ftjob_id)
        return await service.one(pool, nc, principal, ftjob_id)

    @get("/{ftjob_id:str}/events", summary="A fine-tuning job's events (history and metrics), newest first")
    async def events(
        self,
        pool: Pool,
        principal: Principal,
        ftjob_id: JobId,
        after: After = None,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
    ) -> FineTuningEventPage:
        async with pool.acquire() as conn:
            row = await service.owned(conn, principal, ftjob_id)
            found = await history.events(conn, row, after, limit)
        return FineTuningEventPage(data=found[:limit], has_more=len(found) > limit)

    @get("/{ftjob_id:str}/checkpoints", summary="A fine-tuning job's saved checkpoints, newest first")
    async def checkpoints(
        self,
        pool: Pool,
        js: JetStreamContext,
        principal: Principal,
        ftjob_id: JobId,
        after: After = None,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 10,
    ) -> FineTuningCheckpointPage:
        async with pool.acquire() as conn:
            row = await service.owned(conn, principal, ftjob_id)
            told = await history.told_steps(conn, row.job_id)
        steps = sorted(told, reverse=True) or await history.saved_steps(js, row)
        if after is not None:
            ids = [mapping.checkpoint_id(row.id, step) for step in steps]
            if after not in ids:
                raise ApiError(400, "invalid_cursor", "after is not a checkpoint id of this job", "after")
            steps = steps[ids.index(after) + 1 :]
        async with pool.acquire() as conn:
            found = await history.checkpoints(conn, row, steps[:limit], service.fine_tuned_name(row))
        first, last = (found[0].id, found[-1].id) if found else (None, None)
        return FineTuningCheckpointPage(data=found, first_id=first, last_id=last, has_more=len(steps) > limit)
