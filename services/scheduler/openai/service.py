"""Fine-tuning jobs: created through the same path as POST /api/jobs (one job, two faces), answered as OpenAI's
objects, cancelled, paused (stopped, its checkpoints kept) and resumed from the last checkpoint."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from litestar import Response
from nats.aio.client import Client
from nats.js import JetStreamContext

from services.common import storage
from services.common.contracts import TERMINAL_JOB_STATES
from services.common.errors import ApiError
from services.common.security import Principal

from ..jobs import idempotency, recovery
from ..jobs import service as jobs
from ..jobs import store as jobs_store
from ..jobs.fetches import from_column
from ..jobs.idempotency import Submission
from ..jobs.transitions import RERUNNABLE, add_event
from ..settings import SchedulerSettings
from . import history, mapping, results, store
from .schemas import FineTuningError, FineTuningJob, FineTuningJobCreate, FineTuningSummary, LlmctExtension

ROUTE = "POST /v1/fine_tuning/jobs"
MAX_SHOWN_CHECKPOINTS = 50  # on the job page (GET .../checkpoints pages through all)


def not_found(ftjob_id: str) -> ApiError:
    """The one answer for a fine-tuning job that does not exist or is someone else's."""
    return ApiError(404, "fine_tuning_job_not_found", f"no fine-tuning job {ftjob_id!r} of yours", "fine_tuning_job_id")


def job_object(row: store.FineTuningRow) -> FineTuningJob:
    """The fine-tuning job as OpenAI's object."""
    succeeded = row.state == "succeeded"
    failed = row.state == "failed"
    return FineTuningJob(
        id=row.id,
        model=row.model,
        created_at=mapping.unix(row.created_at) or 0,
        finished_at=mapping.unix(row.finished_at),
        fine_tuned_model=fine_tuned_name(row) if succeeded else None,
        organization_id=row.owner_id,
        result_files=[row.result_file] if row.result_file else [],
        status=mapping.status_of(row.state, row.pause_requested),
        validation_file=row.validation_file,
        training_file=row.training_file,
        hyperparameters=mapping.hyperparameters_of(row.method),
        method=row.method,
        trained_tokens=trained_tokens(row) if succeeded else None,
        error=FineTuningError(code=row.reason or "failed", message=row.message or "", param=None) if failed else None,
        seed=row.seed,
        estimated_finish=mapping.unix(row.estimated_finish) if row.state == "running" else None,
        integrations=row.integrations,
        metadata=row.metadata,
        user_provided_suffix=row.suffix,
        llmct=LlmctExtension(job_id=row.job_id, model_name=row.model_name),
    )


def fine_tuned_name(row: store.FineTuningRow) -> str:
    return mapping.fine_tuned_model(row.model, row.username or row.owner_id, row.suffix, row.id)


def tokens_of(metrics: dict[str, float] | None, progress_tokens: int | None = None) -> int | None:
    """The tokens trained on (padding not counted), as the engine's final metrics say, else as its progress last
    counted; None where it counted none."""
    seen = (metrics or {}).get("num_input_tokens_seen")
    return progress_tokens if seen is None else int(seen)


def trained_tokens(row: store.FineTuningRow) -> int | None:
    return tokens_of(row.metrics, row.tokens_seen)


async def owned(conn, principal: Principal, ftjob_id: str) -> store.FineTuningRow:
    """The caller's fine-tuning job (any for admins); 404 otherwise."""
    row = await store.one(conn, ftjob_id, None if principal.is_admin else principal.user_id)
    if row is None:
        raise not_found(ftjob_id)
    return row


class FineTuningSubmission(Submission):
    """The job's submission, which also stores its fine-tuning row in the transaction that stores the job."""

    def __init__(self, principal: Principal, key: str | None, data: FineTuningJobCreate, values: dict):
        self.ftjob_id = mapping.new_job_id()
        self.values = values
        super().__init__(principal, key, ROUTE, data, self.render_job)

    async def record(self, conn, resource_id: str) -> None:
        await store.insert(conn, ftjob_id=self.ftjob_id, job_id=resource_id, owner_id=self.user_id, values=self.values)
        await super().record(conn, resource_id)

    async def render_job(self, conn, _: str) -> idempotency.Answer:
        row = await store.one(conn, self.ftjob_id, self.user_id)
        assert row is not None  # inserted just before, in this transaction
        return idempotency.Answer(200, msgspec.json.encode(job_object(row)))


async def gpu_count(pool: asyncpg.Pool) -> int:
    """1 when some registered agent has a GPU (or none is registered yet: the first may); 0 on a CPU-only fleet."""
    agents = await jobs_store.any_agents(pool)
    return 1 if not agents or any(agent["gpus"] for agent in agents) else 0


async def create(
    pool: asyncpg.Pool,
    nc: Client,
    js: JetStreamContext,
    settings: SchedulerSettings,
    principal: Principal,
    data: FineTuningJobCreate,
    key: str | None,
) -> Response:
    """Submit the training job through POST /api/jobs' own path, its fine-tuning row in the same transaction."""
    for field in ("metadata", "integrations"):
        if holds_nul(msgspec.to_builtins(getattr(data, field))):
            raise ApiError(400, "invalid_field", f"{field} must not contain NUL (\\u0000) characters", field)
    start = None
    if data.model.startswith("ft:") and mapping.checkpoint_of_model(data.model) is None:
        named = f"{data.model!r} names no checkpoint (…:<job id>:ckpt-step-<n>)"
        raise ApiError(400, "model_not_found", named, "model")
    if (asked := mapping.checkpoint_of_model(data.model)) is not None:
        base, start = await checkpoint_start(pool, js, settings, principal, *asked)
        data = msgspec.structs.replace(data, model=base)  # the checkpoint's base; its adapter trained on
    method = mapping.resolved_method(data)
    seed = data.seed if data.seed is not None else mapping.new_seed()
    request = mapping.train_request(data, method, seed, await gpu_count(pool))
    values = {
        **{f: getattr(data, f) for f in ("model", "training_file", "validation_file", "suffix", "metadata")},
        "seed": seed,
        "method": method,
        "integrations": msgspec.to_builtins(data.integrations or []),
    }
    submission = FineTuningSubmission(principal, key, data, values)
    try:
        return await idempotency.created(
            pool, submission, lambda: jobs.submit(pool, nc, js, settings, principal, request, submission, start)
        )
    except ApiError as exc:
        raise as_openai_refusal(exc, data) from exc


async def checkpoint_start(
    pool: asyncpg.Pool,
    js: JetStreamContext,
    settings: SchedulerSettings,
    principal: Principal,
    ftjob_id: str,
    step: int,
) -> tuple[str, jobs.StartAdapter]:
    """A checkpoint of one of the caller's fine-tuning jobs as the start of a new one: (the base it was trained on,
    its adapter folder and, in `objects` mode, its files in the store). 400 on `model` when there is no such
    checkpoint (a checkpoint the trainer deleted, save_total_limit, is gone)."""
    async with pool.acquire() as conn:
        row = await store.one(conn, ftjob_id, None if principal.is_admin else principal.user_id)
        told = await history.told_steps(conn, row.job_id) if row is not None else []
    gone = ApiError(
        400, "model_not_found", f"no checkpoint at step {step} of a fine-tuning job of yours ({ftjob_id})", "model"
    )
    if row is None or not row.output_dir:
        raise gone
    folder = Path(row.output_dir) / f"checkpoint-{step}"
    if from_column(row.fetches).base:  # objects mode: from the store, placed where the job wrote it
        if not Path(row.output_dir).is_relative_to(settings.storage.base):
            raise gone
        relative = Path(row.output_dir).relative_to(settings.storage.base).as_posix()
        stored = await storage.stored_checkpoint(js, row.job_id, relative, step)
        if stored is None:
            raise gone
        return row.model, jobs.StartAdapter(path=str(folder), inputs=list(stored[1]))
    if step not in told and step not in await asyncio.to_thread(history.folder_steps, row.output_dir):
        raise gone
    return row.model, jobs.StartAdapter(path=str(folder))


def holds_nul(value: Any) -> bool:
    """Whether a NUL is in any key or string of `value` (jsonb refuses one)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_nul(v) for v in value)
    return False


def as_openai_refusal(exc: ApiError, data: FineTuningJobCreate) -> ApiError:
    """A refusal of the request we built, naming OpenAI's field; a file that is not the caller's is not found."""
    param = mapping.field_of_request(exc.field)
    if exc.code != "unknown_dataset" or param not in ("training_file", "validation_file"):
        return ApiError(exc.status, exc.code, exc.message, param, exc.headers)
    file_id = data.training_file if param == "training_file" else data.validation_file
    message = f"{param} {file_id!r} is not a file of yours (GET /v1/files lists them)"
    return ApiError(404, "file_not_found", message, param)


async def cancel(pool: asyncpg.Pool, nc: Client, principal: Principal, ftjob_id: str) -> str:
    """Cancel the job; a paused one (or one pausing) reads cancelled from now on."""
    async with pool.acquire() as conn:
        row = await owned(conn, principal, ftjob_id)
        paused = mapping.status_of(row.state, row.pause_requested) == "paused"
        if paused or row.state not in TERMINAL_JOB_STATES:
            await store.set_pause(conn, ftjob_id, False)
    if not paused:
        await jobs.cancel(pool, nc, principal, row.job_id)  # 409 when it already ended
    return ftjob_id


async def pause(pool: asyncpg.Pool, nc: Client, principal: Principal, ftjob_id: str) -> str:
    """Stop the job after a checkpoint at its current step (its agent asks the engine; without one within
    PAUSE_GRACE_S it stops as a cancel, keeping the checkpoints it saved): it reads `paused` once stopped, and
    resumes from its newest checkpoint."""
    async with pool.acquire() as conn:
        row = await owned(conn, principal, ftjob_id)
        if row.state not in ("pending", "dispatched", "running"):
            status = mapping.status_of(row.state, row.pause_requested)
            raise ApiError(409, "not_pausable", f"only a queued or running job pauses; this one is {status}")
        async with conn.transaction():
            await store.set_pause(conn, ftjob_id, True)
            await add_event(conn, row.job_id, row.state, "pause_requested", f"by {principal.username}")
    await jobs.cancel(pool, nc, principal, row.job_id, pause_grace_s=jobs.PAUSE_GRACE_S)
    return ftjob_id


async def resume(
    pool: asyncpg.Pool,
    nc: Client,
    js: JetStreamContext,
    settings: SchedulerSettings,
    principal: Principal,
    ftjob_id: str,
) -> str:
    """A paused job back to the queue, from its last checkpoint (from the start when it saved none yet)."""
    async with pool.acquire() as conn:
        row = await owned(conn, principal, ftjob_id)
    if not (row.pause_requested and row.state in RERUNNABLE):
        status = mapping.status_of(row.state, row.pause_requested)
        raise ApiError(409, "not_paused", f"only a paused job resumes; this one is {status}")
    try:
        await recovery.retry(pool, js, nc, settings, principal, row.job_id, resume=True)
    except ApiError as exc:
        if exc.code != "no_checkpoint":
            raise
        await recovery.retry(pool, js, nc, settings, principal, row.job_id, resume=False)
    async with pool.acquire() as conn:
        await store.set_pause(conn, ftjob_id, False)
    return ftjob_id


async def one(pool: asyncpg.Pool, nc: Client, principal: Principal, ftjob_id: str) -> FineTuningJob:
    """The caller's fine-tuning job; a succeeded one's results file is made here if it is not yet (results.py)."""
    async with pool.acquire() as conn:
        row = await owned(conn, principal, ftjob_id)
    return job_object(await results.ensure(pool, nc, row))


async def summary(pool: asyncpg.Pool, js: JetStreamContext, job_id: str) -> FineTuningSummary | None:
    """OpenAI's face of the platform job `job_id` for its job page (the caller may see the job); None when it was
    not created as a fine-tuning job."""
    async with pool.acquire() as conn:
        row = await store.by_job(conn, job_id)
    if row is None:
        return None
    shown = job_object(row)
    steps = (await history.saved_steps(js, row))[:MAX_SHOWN_CHECKPOINTS]
    async with pool.acquire() as conn:
        checkpoints = await history.checkpoints(conn, row, steps, fine_tuned_name(row))
    return FineTuningSummary(
        id=row.id,
        status=shown.status,
        fine_tuned_model=shown.fine_tuned_model,
        trained_tokens=shown.trained_tokens,
        result_files=shown.result_files,
        method=row.method["type"],
        hyperparameters=shown.hyperparameters,
        suffix=row.suffix,
        checkpoints=checkpoints,
    )
