"""HTTP routes of /api/jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from asyncpg import Pool
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from litestar.response import Stream
from nats.aio.client import Client
from nats.js import JetStreamContext

from services.common import archive, folders, ranges
from services.common.contracts import JobKind, JobState
from services.common.dependencies import Injected
from services.common.errors import ApiError, not_found
from services.common.security import Principal

from .. import rendering
from ..openai import service as fine_tuning
from ..settings import SchedulerSettings
from . import downloads, idempotency, queue, recovery, service, store, tracking
from .fetches import Fetches, from_column
from .schemas import (
    InputsFetch,
    JobDetail,
    JobEventOut,
    JobPage,
    JobPreview,
    JobRequest,
    JobSummary,
    ProgressPoint,
    SavedCheckpoint,
    kind_of,
)
from .store import JobRow, JobSummaryRow
from .transitions import RERUNNABLE


def _summary(row: JobSummaryRow, position: int | None) -> JobSummary:
    return JobSummary(
        **{f: getattr(row, f) for f in JobSummary.__struct_fields__ if f != "queue_position"}, queue_position=position
    )


async def owned_job(conn, principal: Principal, job_id: str) -> JobRow:
    """The caller's job row (any job for admins); 404 otherwise."""
    row = await store.job_detail(conn, job_id, None if principal.is_admin else principal.user_id)
    if row is None:
        raise not_found("job")
    return row


class SeriesWindow(msgspec.Struct, frozen=True):
    """Which part of a job's progress series a detail carries: past a step, at most so many points."""

    after_step: int = -1
    points: int = 1000


DETAIL_OWN = (
    "history",
    "progress_series",
    "queue_position",
    "resume_step",
    "model_hub",
    "progress_points",
    "fetch",
    "checkpoints",
    "tracking",
    "trained_tokens",
    "fine_tuning",
)


async def load_detail(
    pool: Pool,
    js: JetStreamContext,
    settings: SchedulerSettings,
    principal: Principal,
    job_id: str,
    window: SeriesWindow = SeriesWindow(),
) -> JobDetail:
    """The caller's job (any job for admins); 404 otherwise. The connection goes back before a resumable job's newest
    checkpoint is looked for (a listing of the object store, in objects mode)."""
    async with pool.acquire() as conn:
        detail, resumable = await detail_on(conn, settings, principal, job_id, window)
    if detail.openai_id is not None:
        detail = msgspec.structs.replace(detail, fine_tuning=await fine_tuning.summary(pool, js, job_id))
    if resumable is None:
        return detail
    output_dir, needs = resumable
    return msgspec.structs.replace(detail, resume_step=await recovery.resume_step(js, job_id, output_dir, needs))


async def detail_on(
    conn, settings: SchedulerSettings, principal: Principal, job_id: str, window: SeriesWindow = SeriesWindow()
) -> tuple[JobDetail, tuple[str | None, Fetches] | None]:
    """The job's detail read on a connection already held (inside the transaction that stores a job, for its
    answer), `resume_step` left out; and, for a job that could be resumed, where its checkpoints are."""
    row = await owned_job(conn, principal, job_id)
    history = [JobEventOut(**dict(r)) for r in await store.job_history(conn, job_id)]
    rows = await store.progress_series(conn, job_id, window.after_step, window.points)
    series = [ProgressPoint(**{k: v for k, v in r.items() if k != "total"}) for r in rows]
    position = await queue.position(conn, job_id, settings.fair_share_window_h) if row.state == "pending" else None
    resumable = None
    if row.kind == "train" and row.state in RERUNNABLE:
        fetches = from_column(await conn.fetchval("SELECT fetches FROM jobs WHERE id = $1", job_id))
        resumable = (row.output_dir, fetches)
    detail = JobDetail(
        **{f: getattr(row, f) for f in JobDetail.__struct_fields__ if f not in DETAIL_OWN},
        history=history,
        progress_series=series,
        progress_points=rows[0]["total"] if rows else 0,
        queue_position=position,
        resume_step=None,
        model_hub=rendering.model_hub(row.stages),
        fetch=inputs_fetch(row),
        tracking=tracking.runs(job_id, row.tracking),
        checkpoints=[SavedCheckpoint(**dict(r)) for r in await store.job_checkpoints(conn, job_id)],
        trained_tokens=fine_tuning.tokens_of(row.metrics, (row.progress or {}).get("tokens_seen")),
    )
    return detail, resumable


def inputs_fetch(row: JobRow) -> InputsFetch | None:
    """The job's newest input fetch report when it is of its current attempt (an earlier one's is history)."""
    report = row.fetch_progress
    if not report or report.get("attempt") != row.attempt:
        return None
    return msgspec.convert({k: v for k, v in report.items() if k != "attempt"}, InputsFetch)


def cursor_after(value: str | None) -> tuple[datetime, str] | None:
    if not value:
        return None
    try:
        at, _, job_id = value.partition("|")
        return datetime.fromisoformat(at), job_id
    except ValueError as exc:
        raise ApiError(422, "invalid_field", "cursor is not one this API returned", "cursor") from exc


def next_cursor(rows: Sequence[Any], limit: int) -> str | None:
    """The cursor of the next page when a query for `limit + 1` rows (typed rows, or records) got more than
    `limit`."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    at, key = (last["created_at"], last["id"]) if isinstance(last, asyncpg.Record) else (last.created_at, last.id)
    return f"{at.isoformat()}|{key}"


ZIP_HELP = f"""Every file the job wrote in its output folder (links left out), under `<job id>/`, stored uncompressed
with fixed timestamps: the same folder always gives the same bytes, so the zip has a length and an ETag up front.
A file still being written is included as it was when the download started.

{ranges.RESUMABLE}"""

FILE_HELP = f"""`path` is a file's path inside the job's output folder, as the zip names it after the job's id
(`adapter_model.safetensors`, `checkpoint-100/trainer_state.json`); links and `..` lead nowhere. In `objects`
storage mode the file streams straight out of the store, its ETag its sha256.

{ranges.RESUMABLE}"""


class JobController(Controller):
    path = "/api/jobs"
    tags = ["jobs"]

    @post(
        "/",
        status_code=201,
        summary="Submit a job: kind 'train', 'eval' or 'export' (dry_run: preview only)",
        response_headers=[idempotency.REPLAYED_HEADER],
    )
    async def submit(
        self,
        pool: Pool,
        nc: Client,
        js: JetStreamContext,
        settings: Injected[SchedulerSettings],
        principal: Principal,
        data: JobRequest,
        dry_run: Annotated[bool, Parameter(description="validate and render, return the YAML, queue nothing")] = False,
        idempotency_key: idempotency.KeyHeader = None,
    ) -> Response[JobDetail | JobPreview]:
        if dry_run:
            data, _ = await service.with_tracking(pool, settings, principal, data)
            rendered, est, _ = await service.prepare(pool, nc, settings, principal, data, "job_preview")
            return Response(
                JobPreview(
                    kind=kind_of(data),
                    config=rendered.config,
                    config_yaml=rendered.yaml_text(),
                    stages=[s.name for s in rendered.stages],
                    estimate=msgspec.to_builtins(est),
                    model_hub=rendered.model_hub,
                ),
                status_code=200,
            )

        async def answer(conn, job_id: str) -> idempotency.Answer:
            detail, _ = await detail_on(conn, settings, principal, job_id)  # pending: nothing to resume
            return idempotency.Answer(201, msgspec.json.encode(detail))

        submission = idempotency.Submission(principal, idempotency_key, "POST /api/jobs", data, answer)
        return await idempotency.created(
            pool, submission, lambda: service.submit(pool, nc, js, settings, principal, data, submission)
        )

    @get("/", summary="List the caller's jobs (admins: everyone's), newest first")
    async def list_jobs(
        self,
        pool: Pool,
        settings: Injected[SchedulerSettings],
        principal: Principal,
        job_state: Annotated[JobState | None, Parameter(query="state")] = None,
        kind: JobKind | None = None,
        q: Annotated[str | None, Parameter(max_length=128, description="part of a job id or model name")] = None,
        cursor: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> JobPage:
        rows = await store.list_jobs(
            pool,
            owner_id=None if principal.is_admin else principal.user_id,
            state=job_state,
            kind=kind,
            search=q,
            before=cursor_after(cursor),
            limit=limit + 1,
        )
        page = rows[:limit]
        waiting = [r.id for r in page if r.state == "pending"]
        places = {}
        if waiting:
            async with pool.acquire() as conn:
                places = await queue.positions(conn, waiting, settings.fair_share_window_h)
        return JobPage(items=[_summary(r, places.get(r.id)) for r in page], next_cursor=next_cursor(rows, limit))

    @get("/{job_id:str}", summary="A job: frozen config, history, progress series, metrics, reason")
    async def detail(
        self,
        pool: Pool,
        js: JetStreamContext,
        settings: Injected[SchedulerSettings],
        principal: Principal,
        job_id: str,
        series_after_step: Annotated[
            int, Parameter(ge=-1, le=2**31 - 1, description="only progress points past this step (-1: from the start)")
        ] = -1,
        series_points: Annotated[
            int,
            Parameter(ge=2, le=5000, description="at most this many progress points, thinned evenly when more"),
        ] = 1000,
    ) -> JobDetail:
        window = SeriesWindow(after_step=series_after_step, points=series_points)
        return await load_detail(pool, js, settings, principal, job_id, window)

    @post("/{job_id:str}/cancel", status_code=202, summary="Cancel a job")
    async def cancel(self, pool: Pool, nc: Client, principal: Principal, job_id: str) -> dict[str, str]:
        return {"id": job_id, "state": await service.cancel(pool, nc, principal, job_id)}

    @post(
        "/{job_id:str}/pause",
        status_code=202,
        summary="Pause a training job: it saves a checkpoint at its current step, then stops (resume continues)",
    )
    async def pause(self, pool: Pool, nc: Client, principal: Principal, job_id: str) -> dict[str, str]:
        return {"id": job_id, "state": await service.pause(pool, nc, principal, job_id)}

    @post(
        "/{job_id:str}/retry",
        status_code=202,
        summary="Run a failed or cancelled job again, from the start, with the same frozen config",
    )
    async def retry(
        self,
        pool: Pool,
        nc: Client,
        js: JetStreamContext,
        settings: Injected[SchedulerSettings],
        principal: Principal,
        job_id: str,
    ) -> JobDetail:
        await recovery.retry(pool, js, nc, settings, principal, job_id, resume=False)
        return await load_detail(pool, js, settings, principal, job_id)

    @post(
        "/{job_id:str}/resume",
        status_code=202,
        summary="Continue a failed or cancelled training job from its last checkpoint",
    )
    async def resume(
        self,
        pool: Pool,
        nc: Client,
        js: JetStreamContext,
        settings: Injected[SchedulerSettings],
        principal: Principal,
        job_id: str,
    ) -> JobDetail:
        await recovery.retry(pool, js, nc, settings, principal, job_id, resume=True)
        return await load_detail(pool, js, settings, principal, job_id)

    @get(
        "/{job_id:str}/artifacts",
        summary="The job's output folder as a zip, streamed",
        description=ZIP_HELP,
    )
    async def artifacts(
        self,
        request: Request,
        pool: Pool,
        js: JetStreamContext,
        settings: Injected[SchedulerSettings],
        principal: Principal,
        job_id: str,
    ) -> Stream:
        async with pool.acquire() as conn:
            job = await owned_job(conn, principal, job_id)
        folder = await downloads.finished_outputs(js, settings, job)
        files = await asyncio.to_thread(folders.own_files, folder) if folder else []
        layout = await asyncio.to_thread(archive.plan, folder, job_id, files) if folder and files else None
        if layout is None or not layout.members:
            raise ApiError(404, "no_artifacts", "the job has not written any output yet")
        return ranges.ranged(
            request.headers,
            layout.size,
            layout.etag,
            archive.reader(layout),
            media_type="application/zip",
            extra=ranges.attachment(f"{job_id}.zip"),
        )

    @get("/{job_id:str}/artifacts/{path:path}", summary="One file of the job's outputs", description=FILE_HELP)
    async def artifact_file(
        self,
        request: Request,
        pool: Pool,
        js: JetStreamContext,
        settings: Injected[SchedulerSettings],
        principal: Principal,
        job_id: str,
        path: str,
    ) -> Stream:
        async with pool.acquire() as conn:
            job = await owned_job(conn, principal, job_id)
        return await downloads.output_file(js, settings, job, path, request.headers)

    @get(
        "/{job_id:str}/log",
        summary="The job's full log as text (so far, for a job still running)",
        description=ranges.RESUMABLE,
    )
    async def log_file(
        self,
        request: Request,
        pool: Pool,
        js: JetStreamContext,
        settings: Injected[SchedulerSettings],
        principal: Principal,
        job_id: str,
    ) -> Stream:
        async with pool.acquire() as conn:
            job = await owned_job(conn, principal, job_id)
        return await downloads.job_log(js, settings, job_id, job.state, request.headers, job.attempt)
