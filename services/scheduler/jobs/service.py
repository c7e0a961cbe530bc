"""Logic of the scheduler: accept jobs, place them on agents, follow what agents report, cancel."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import asyncpg
import msgspec
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from services.common import contracts
from services.common.contracts import JobInput, Subjects
from services.common.errors import ApiError, not_found
from services.common.security import Principal, new_id

from .. import rendering
from ..settings import SchedulerSettings
from . import access, memory, placement, queue, store, tracking
from .fetches import Fetches, fetches, from_column
from .idempotency import Submission
from .schemas import EvalRequest, ExportRequest, JobRequest, TrainRequest, kind_of
from .transitions import ON_AGENT, JobChange, add_event, transition

log = logging.getLogger(__name__)

DISPATCH_TIMEOUT_S = 60.0
DISPATCH_LOCK = 7_001  # advisory lock: one dispatch pass at a time across scheduler replicas


async def check_capacity(
    pool: asyncpg.Pool, gpu_count: int, estimate: memory.MemoryEstimate, field: str | None = None
) -> None:
    """Refuse a job that no registered agent could ever hold; with no agents yet, let it wait. `field` names what
    to change (default: the batch size of a training job, the GPU count of any other)."""
    agents = placement.capacities(await store.any_agents(pool), [])
    if not agents or any(placement.could_ever_hold(a, gpu_count, estimate.per_gpu_mb) for a in agents):
        return
    if gpu_count == 0:
        raise ApiError(422, "no_capacity", "no registered agent offers CPU slots: ask for gpu_count >= 1", "gpu_count")
    largest = max((mb for a in agents for mb in a.gpu_memory_mb.values()), default=0)
    if largest == 0:
        raise ApiError(
            422, "no_capacity", "no registered agent has a GPU: ask for gpu_count 0 to run on CPU slots", "gpu_count"
        )
    training = estimate.method != "inference"
    raise ApiError(
        422,
        "insufficient_gpu_memory",
        f"the job needs about {estimate.per_gpu_mb} MB per GPU on {gpu_count} GPU(s); the largest GPU "
        f"registered has {largest} MB and no agent has enough of them. Try: {memory.advice(estimate)}",
        field or ("per_device_train_batch_size" if training else "gpu_count"),
    )


async def check_engine(pool: asyncpg.Pool, engine: str, settings: SchedulerSettings) -> None:
    """Refuse a deployment that asks for vLLM while agents are online and none of them has it; with none online,
    let it wait (the first agent to come may have it)."""
    if engine != "vllm":
        return
    engines = await store.agent_engines(pool, settings.offline_after_s)
    if not engines or any("vllm" in names for names in engines):
        return
    raise ApiError(
        422,
        "engine_unavailable",
        "no online agent has vLLM: deploy with engine 'auto' (vLLM where an agent has it, else LLaMA-Factory's "
        "server) or 'llamafactory', or ask an admin to install vLLM on an agent (engine/vllm/install.sh)",
        "engine",
    )


class StartAdapter(msgspec.Struct, frozen=True, kw_only=True):
    """A training job that goes on training an adapter it is given (a checkpoint of another job of the caller's,
    services/scheduler/openai): its folder as the engine reads it, and in `objects` mode its files."""

    path: str
    inputs: list[JobInput] = msgspec.field(default_factory=list)


async def prepare(
    pool: asyncpg.Pool,
    nc: Client,
    settings: SchedulerSettings,
    principal: Principal,
    req: JobRequest,
    job_id: str,
    start: StartAdapter | None = None,
) -> tuple[rendering.Rendered, memory.MemoryEstimate, Fetches]:
    """Validate and render a job of any kind (asking the registry and the datasets service what it may use),
    and check that some agent could hold it; with what it fetches from the store in `objects` mode."""
    output_dir = settings.storage.output / job_id
    field = None
    match req:
        case TrainRequest():
            rendered, est, needs = await _prepare_train(nc, settings, principal, req, output_dir, start)
            field = memory_field(req.config_overrides)
        case EvalRequest():
            rendered, est, needs = await _prepare_eval(nc, settings, principal, req, output_dir)
        case ExportRequest():
            rendered, est, needs = await _prepare_export(nc, settings, principal, req, output_dir)
    await check_capacity(pool, req.gpu_count, est, field)
    return rendered, est, needs


async def with_tracking(
    pool: asyncpg.Pool, settings: SchedulerSettings, principal: Principal, req: JobRequest
) -> tuple[JobRequest, list[str]]:
    """A training job's tracking checked and made what it runs with (W&B forced offline by the admin), and the
    secret variables it needs (`jobs.secret_names`); any other job as it is."""
    if not isinstance(req, TrainRequest) or req.tracking is None:
        return req, []
    runs = tracking.effective(req.tracking, settings)
    secret_names = await tracking.check_tracking(pool, settings, principal.user_id, runs)
    return msgspec.structs.replace(req, tracking=runs), secret_names


def memory_field(overrides: dict) -> str | None:
    """The override that sized a training job's memory, if one did: a refusal names it rather than the form."""
    key = next((k for k in memory.TRAINING_KEYS if k in overrides), None)
    return f"config_overrides.{key}" if key else None


async def submit(
    pool: asyncpg.Pool,
    nc: Client,
    js: JetStreamContext,
    settings: SchedulerSettings,
    principal: Principal,
    req: JobRequest,
    submission: Submission | None = None,
    start: StartAdapter | None = None,
) -> str:
    """Validate, render and freeze a job of any kind, store it (and the submission's answer and idempotency key, when
    given), then announce it. `start`: a training job goes on training that adapter."""
    job_id = new_id("job")
    asked = req
    req, secret_names = await with_tracking(pool, settings, principal, req)
    rendered, est, needs = await prepare(pool, nc, settings, principal, req, job_id, start)
    kind = kind_of(req)
    config_yaml, stages = rendered.frozen()
    async with pool.acquire() as conn, conn.transaction():
        if submission is not None:
            await submission.claim(conn)
        await queue.check_priority(conn, principal, req.priority, settings)
        await queue.check_queue_quota(conn, principal.user_id, settings)
        await store.insert_job(
            conn,
            job_id=job_id,
            owner_id=principal.user_id,
            kind=kind,
            priority=req.priority,
            gpu_count=req.gpu_count,
            request=rendering.request_dict(asked),
            config=rendered.config,
            config_yaml=config_yaml,
            stages=stages,
            output_dir=str(settings.storage.output / job_id),
            estimate=msgspec.to_builtins(est),
            fetches=needs,
            tracking=tracking.stored(req.tracking) if isinstance(req, TrainRequest) else None,
            secret_names=secret_names,
        )
        if submission is not None:
            await submission.record(conn, job_id)
    await announce_submitted(js, job_id, kind, principal.user_id, req.priority)
    return job_id


async def _prepare_train(
    nc: Client,
    settings: SchedulerSettings,
    principal: Principal,
    req: TrainRequest,
    output_dir,
    start: StartAdapter | None = None,
) -> tuple[rendering.Rendered, memory.MemoryEstimate, Fetches]:
    model = await access.usable_base_model(nc, principal, req.base_model, settings.model_hub)
    datasets = await access.usable_datasets(nc, principal, req.datasets, req.stage)
    evals = []
    if req.eval_datasets:
        evals = [await access.usable_datasets(nc, principal, req.eval_datasets, req.stage, "eval_datasets")]
    config = rendering.render_train(
        msgspec.structs.replace(req, datasets=datasets.keys, eval_datasets=[k for e in evals for k in e.keys]),
        model_path=model.path,
        default_template=model.template,
        data_dir=settings.storage.data,
        output_dir=output_dir,
    )
    if start is not None:  # LLaMA-Factory goes on training the (last) adapter it is given, on the same base
        config["adapter_name_or_path"] = start.path
    # The merged config, not the form: an override of the batch, the cutoff or the method sizes the job too.
    est = memory.estimate_training(
        config,
        parameters=model.parameter_count or 7_000_000_000,
        gpu_count=req.gpu_count,
        **memory.model_shape(model.path),
    )
    env = tracking.engine_env(req.tracking, output_dir.name)
    inputs = [model.inputs, start.inputs if start else []]
    return rendering.train_stages(config, model.hub, env), est, fetches(settings, inputs, [datasets, *evals])


def installed_tasks(settings: SchedulerSettings) -> list[str]:
    """Benchmark tasks whose data is installed under cloud-llm/evaluation (a folder with mapping.json)."""
    root = settings.storage.evaluation
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/mapping.json") if "_" not in p.parent.name)


async def _prepare_eval(
    nc: Client, settings: SchedulerSettings, principal: Principal, req: EvalRequest, output_dir
) -> tuple[rendering.Rendered, memory.MemoryEstimate, Fetches]:
    rendering.check_eval_request(req, installed_tasks(settings))
    model = await access.usable_model(nc, principal, req.model, "eval", prefer_hub=settings.model_hub)
    datasets = [await access.eval_datasets(nc, principal, req.datasets)] if req.datasets else []
    keys, stage = (datasets[0].keys, datasets[0].eval_stage or "sft") if datasets else ([], "sft")
    rendered = rendering.render_eval(
        msgspec.structs.replace(req, datasets=keys),
        model=model.paths,
        stage=stage,
        data_dir=settings.storage.data,
        task_dir=settings.storage.evaluation,
        output_dir=output_dir,
    )
    config = rendered.config  # merged: overrides of the batch or the lengths size the job too
    generated = config.get("max_new_tokens", 0) if config.get("predict_with_generate") else 0
    est = memory.estimate_inference(
        parameters=model.parameter_count or 7_000_000_000,
        batch_size=config.get("per_device_eval_batch_size", config.get("batch_size", req.per_device_eval_batch_size)),
        cutoff_len=config.get("cutoff_len", req.cutoff_len) + generated,
        gpu_count=req.gpu_count,
        **memory.model_shape(model.paths.model_path),
    )
    return rendered, est, fetches(settings, [model.inputs], datasets)


async def _prepare_export(
    nc: Client, settings: SchedulerSettings, principal: Principal, req: ExportRequest, output_dir
) -> tuple[rendering.Rendered, memory.MemoryEstimate, Fetches]:
    model = await access.usable_model(nc, principal, req.model, "export", prefer_hub=settings.model_hub)
    q = req.quantization
    calibration, datasets = None, []
    if q is not None and q.method == "gptq" and q.calibration_dataset:
        datasets = [await access.calibration_file(nc, principal, q.calibration_dataset)]
        calibration = datasets[0].files[0]
    rendered = rendering.render_export(req, model=model.paths, output_dir=output_dir, calibration_file=calibration)
    # As merged with the overrides: an export_quantization_maxlen override sizes the job too.
    tokens = max(s.config.get("export_quantization_maxlen", q.calibration_maxlen) for s in rendered.stages) if q else 1
    est = memory.estimate_inference(
        parameters=model.parameter_count or 7_000_000_000,
        batch_size=1,
        cutoff_len=tokens,
        gpu_count=req.gpu_count,
        **memory.model_shape(model.paths.model_path),
    )
    return rendered, est, fetches(settings, [model.inputs], datasets)


async def announce_submitted(
    js: JetStreamContext, job_id: str, kind: contracts.JobKind, owner_id: str, priority: int, run: int = 0
) -> None:
    """Wake the dispatcher; deduplicated on the job id (and `run`, for a retry). The job is already committed, so a
    NATS that does not take the message fails nothing: the caller was accepted, and the dispatcher's idle pass (every
    2 s) finds the job anyway. An error here would tell the client "retry" for a job that exists."""
    event = contracts.JobSubmitted(
        job_id=job_id, kind=kind, owner_id=owner_id, priority=priority, submitted_at=datetime.now(UTC)
    )
    try:
        await js.publish(
            Subjects.JOB_SUBMITTED,
            contracts.encode(event),
            headers={"Nats-Msg-Id": f"{job_id}.{run}" if run else job_id},
        )
    except (nats.errors.Error, TimeoutError, ConnectionError) as exc:
        log.warning("job %s stored but not announced (the dispatcher's next pass finds it): %r", job_id, exc)


async def dispatch_pending(pool: asyncpg.Pool, nc: Client, js: JetStreamContext, settings: SchedulerSettings) -> int:
    """One pass over the queue (queue.py's order: priority, fair share, age): place every pending job that fits
    somewhere now and the owner's GPU quota allows; the others keep why they wait. Returns how many went."""
    sent: list[tuple[JobChange, contracts.JobDispatched]] = []
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", DISPATCH_LOCK):
            return 0  # another replica is dispatching
        jobs = await queue.pending(conn, settings.fair_share_window_h)
        if not jobs:
            return 0
        agents = placement.capacities(
            await store.live_agents(conn, settings.offline_after_s), await store.busy_slots(conn)
        )
        held = await queue.held_gpus(conn)
        limits = await queue.quotas(conn, list({job["owner_id"] for job in jobs}), settings)
        for job in jobs:
            per_gpu_mb = job["estimate"].get("per_gpu_mb", 0)
            engine = placement.serve_engine(job["stages"])
            wait = queue.over_gpu_quota(limits[job["owner_id"]], held[job["owner_id"]], job["gpu_count"])
            spot = None if wait else placement.place(agents, job["gpu_count"], per_gpu_mb, engine)
            if spot is None:  # backfill: a smaller job behind it may still fit
                why = wait or queue.no_room(job["gpu_count"], per_gpu_mb, engine)
                await queue.set_wait_reason(conn, job["id"], why, job["wait_reason"])
                continue
            held[job["owner_id"]] += job["gpu_count"]
            attempt = job["attempt"] + 1
            row = await transition(
                conn,
                job["id"],
                "dispatched",
                reason="placed",
                message=f"on {spot.agent_id}",
                agent_id=spot.agent_id,
                gpu_ids=list(spot.gpu_ids),
                attempt=attempt,
                dispatched_at=datetime.now(UTC),
                wait_reason=None,
            )
            if row is None:  # cannot happen: the pending row is locked (FOR UPDATE) by this transaction
                continue
            sent.append(
                (
                    row,
                    contracts.JobDispatched(
                        job_id=job["id"],
                        kind=job["kind"],
                        output_dir=job["output_dir"],
                        stages=rendering.engine_stages(job["stages"]),
                        gpu_ids=spot.gpu_ids,
                        attempt=attempt,
                        dispatched_at=datetime.now(UTC),
                        secrets=tuple(job["secret_names"]),  # names only: the agent asks for values (usersecrets)
                        mlflow_run_id=job["mlflow_run_id"],
                        **_objects(settings, job["fetches"]),
                    ),
                )
            )
    # Committed first; a crash before these publishes is repaired by the stale-dispatch sweep (a silent agent) or
    # the reconciliation (a live one that never lists it). A publish JetStream does not take (its stream electing a
    # leader after a NATS node went) is sent again (deduplicated by its id), and a dispatch that cannot be sent at
    # all goes back to the queue rather than wait for a sweep and count as a lost attempt.
    for row, message in sent:
        if await _send_dispatch(js, row, message):
            await publish_change(nc, row)
        elif (back := await _unsent(pool, message)) is not None:
            await publish_change(nc, back)
    return len(sent)


DISPATCH_SEND_S = 30.0  # how long a dispatch's publish is retried (a NATS leader election takes seconds)


async def _send_dispatch(js: JetStreamContext, row: JobChange, message: contracts.JobDispatched) -> bool:
    deadline = asyncio.get_running_loop().time() + DISPATCH_SEND_S
    delay = 0.25
    while True:
        try:
            await js.publish(
                Subjects.job_dispatch(row.agent_id or ""),
                contracts.encode(message),
                headers={"Nats-Msg-Id": f"{message.job_id}.{message.attempt}"},
            )
            return True
        except (nats.errors.Error, TimeoutError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                log.error("dispatch of %s to %s not sent: %r", message.job_id, row.agent_id, exc)
                return False
            log.warning("dispatch of %s not taken yet (%r); sending it again", message.job_id, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _unsent(pool: asyncpg.Pool, message: contracts.JobDispatched) -> JobChange | None:
    """A dispatch that never left: the job goes back to the queue as it was (its attempt not spent)."""
    async with pool.acquire() as conn, conn.transaction():
        return await transition(
            conn,
            message.job_id,
            "pending",
            from_states=("dispatched",),
            reason="requeued",
            message="its dispatch could not be sent (NATS did not take it); back in the queue",
            agent_id=None,
            gpu_ids=[],
            attempt=message.attempt - 1,
        )


def _objects(settings: SchedulerSettings, column) -> dict:
    """The dispatch's `objects` storage mode fields: what the agent fetches, and the base its paths start with."""
    if settings.storage_mode != "objects":
        return {}
    needs = from_column(column)
    return {"inputs": tuple(needs.inputs), "files": tuple(needs.files), "storage_base": str(settings.storage.base)}


async def publish_change(nc: Client, row: JobChange) -> None:
    """Tell live feeds (the gateway) about a committed state change."""
    await nc.publish(
        Subjects.job_changed(row.owner_id, row.id),
        contracts.encode(
            contracts.JobChanged(
                job_id=row.id, state=row.state, at=datetime.now(UTC), reason=row.reason, message=row.message
            )
        ),
    )


PAUSE_GRACE_S = 60.0  # a pause waits this long for the engine's checkpoint; within LLMCT_CANCEL_GRACE_S's default


async def cancel(pool: asyncpg.Pool, nc: Client, principal: Principal, job_id: str, pause_grace_s: float = 0.0) -> str:
    """Pending jobs end at once; dispatched and running ones are stopped by their agent (`pause_grace_s` > 0: a
    pause, a training engine saves a checkpoint first: contracts.JobCancelRequested)."""
    owner = None if principal.is_admin else principal.user_id
    async with pool.acquire() as conn, conn.transaction():
        job = await store.job_detail(conn, job_id, owner)
        if job is None:
            raise not_found("job")
        if job.state in contracts.TERMINAL_JOB_STATES:
            raise ApiError(409, "job_finished", f"the job already ended ({job.state})")
        row = await transition(
            conn,
            job_id,
            "cancelled",
            from_states=("pending",),
            reason="cancelled",
            message=f"cancelled by {principal.username} before it started",
        )
        if row is None:
            await conn.execute("UPDATE jobs SET cancel_requested = true, updated_at = now() WHERE id = $1", job_id)
            await add_event(conn, job_id, job.state, "cancel_requested", f"by {principal.username}")
    if row is not None:
        await publish_change(nc, row)
        return "cancelled"
    await request_stop(nc, job_id, pause_grace_s)
    return "cancelling"


async def pause(pool: asyncpg.Pool, nc: Client, principal: Principal, job_id: str) -> str:
    """A training job stops after a checkpoint at its current step (ends `cancelled`, reason `paused`); resumed
    from it by POST /api/jobs/{id}/resume. A pending one is cancelled at once."""
    owner = None if principal.is_admin else principal.user_id
    async with pool.acquire() as conn, conn.transaction():
        job = await store.job_detail(conn, job_id, owner)
        if job is None:
            raise not_found("job")
        if job.kind != "train":
            raise ApiError(409, "not_pausable", f"only a training job pauses; this one is a {job.kind} job: cancel it")
        if job.state in contracts.TERMINAL_JOB_STATES:
            raise ApiError(409, "job_finished", f"the job already ended ({job.state})")
        await add_event(conn, job_id, job.state, "pause_requested", f"by {principal.username}")
    return await cancel(pool, nc, principal, job_id, pause_grace_s=PAUSE_GRACE_S)


async def request_stop(nc: Client, job_id: str, pause_grace_s: float = 0.0) -> None:
    request = contracts.JobCancelRequested(job_id=job_id, pause_grace_s=pause_grace_s)
    await nc.publish(Subjects.job_cancel(job_id), contracts.encode(request))


async def _end_unanswered_cancels(conn, grace_s: float) -> list[JobChange | None]:
    """A cancel its agent never confirmed (the agent died, restarted without the job, or hangs) ends the job anyway:
    nothing may stay `running` that only database surgery could clear. The agent is still told to stop it."""
    unconfirmed = f"the agent did not confirm the stop within {grace_s:.0f} s"
    changed = []
    for job in await store.unanswered_cancels(conn, grace_s):
        if job["stop_reason"] == "time_limit":
            row = await transition(
                conn,
                job["id"],
                "failed",
                from_states=ON_AGENT,
                reason="time_limit",
                message=f"stopped at its run-time limit; {unconfirmed}",
            )
        else:
            row = await transition(
                conn,
                job["id"],
                "cancelled",
                from_states=ON_AGENT,
                reason="cancelled",
                message=f"cancelled; {unconfirmed}",
            )
        changed.append(row)
    return changed


async def _stop_over_time(conn, default_h: float) -> list[str]:
    """Ask the agents of jobs that ran past their owner's maximum run time to stop them; the job then ends failed
    with reason `time_limit` (events.py), or after the cancel grace if its agent never answers."""
    jobs = await store.over_time_limit(conn, default_h)
    for job in jobs:
        await conn.execute(
            "UPDATE jobs SET cancel_requested = true, stop_reason = 'time_limit', updated_at = now() WHERE id = $1",
            job["id"],
        )
        limit = f"{job['limit_h']:g} h"
        await add_event(conn, job["id"], job["state"], "cancel_requested", f"its maximum run time ({limit}) is up")
    return [job["id"] for job in jobs]


async def sweep(pool: asyncpg.Pool, nc: Client, settings: SchedulerSettings) -> None:
    """Repair what a crash or a lost agent left: re-queue stale dispatches, stop jobs past their maximum run time,
    end cancels no agent confirmed within the grace, resend the others."""
    changed = []
    async with pool.acquire() as conn, conn.transaction():
        for job in await store.stale_dispatches(conn, DISPATCH_TIMEOUT_S, settings.offline_after_s):
            if job["cancel_requested"]:
                row = await transition(
                    conn,
                    job["id"],
                    "cancelled",
                    from_states=("dispatched",),
                    reason="cancelled",
                    message="cancelled; the agent never took the job",
                )
            else:
                row = await transition(
                    conn,
                    job["id"],
                    "pending",
                    from_states=("dispatched",),
                    reason="requeued",
                    message="the agent never took the job",
                    agent_id=None,
                    gpu_ids=[],
                )
            changed.append(row)
        await _stop_over_time(conn, settings.max_run_h)  # asked to stop: sent below with the other cancels
        ended = await _end_unanswered_cancels(conn, settings.cancel_grace_s)
        changed.extend(ended)
        to_stop = [job["id"] for job in await store.cancel_pending_running(conn)]
        to_stop += [change.id for change in ended if change is not None]
    for row in filter(None, changed):
        await publish_change(nc, row)
    for job_id in to_stop:
        await request_stop(nc, job_id)
