"""Jobs that go round again: a retry from the start, a resume from the last checkpoint, and the jobs of an
agent that went offline (re-queued while they have retries left, resuming where a checkpoint exists)."""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from services.common import storage
from services.common.contracts import FinishReason
from services.common.errors import ApiError, not_found
from services.common.security import Principal
from services.common.storage import CHECKPOINT

from .. import rendering
from ..settings import SchedulerSettings
from . import queue, service, store
from .fetches import Fetches, from_column, resuming, to_column
from .transitions import ON_AGENT, RERUNNABLE, JobChange, transition

log = logging.getLogger(__name__)


def latest_checkpoint(output_dir: str | None) -> tuple[Path, int] | None:
    """The newest `checkpoint-<step>` folder the trainer finished writing (it has trainer_state.json)."""
    if not output_dir or not Path(output_dir).is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in Path(output_dir).iterdir()
        if (m := CHECKPOINT.match(p.name)) and (p / "trainer_state.json").is_file()
    ]
    if not found:
        return None
    step, path = max(found)
    return path, step


def with_checkpoint(stages: list[dict], checkpoint: Path | None) -> tuple[list[dict], dict, str]:
    """The job's stages with its training stage resuming from `checkpoint` (or from the start when None);
    returns (stages, final config, YAML text)."""
    rendered = []
    for stage in map(rendering.Stage.from_engine, rendering.engine_stages(stages)):
        if stage.name == "train":
            stage.config.pop("resume_from_checkpoint", None)
            stage.config["overwrite_output_dir"] = checkpoint is None
            if checkpoint is not None:
                stage.config["resume_from_checkpoint"] = str(checkpoint)
        rendered.append(stage)
    result = rendering.Rendered(stages=rendered)
    text, rows = result.frozen()
    return rows, result.config, text


async def retry(
    pool: asyncpg.Pool,
    js: JetStreamContext,
    nc: Client,
    settings: SchedulerSettings,
    principal: Principal,
    job_id: str,
    *,
    resume: bool,
) -> None:
    """Put a failed or cancelled job back in the queue: from the start, or (`resume`) from its last checkpoint."""
    async with pool.acquire() as conn, conn.transaction():
        job = await store.job_detail(conn, job_id, None if principal.is_admin else principal.user_id)
        if job is None:
            raise not_found("job")
        if job.kind == "deploy":
            raise ApiError(409, "not_rerunnable", "a deployment is not retried: deploy the model again")
        if job.state not in RERUNNABLE:
            raise ApiError(409, "not_rerunnable", f"only failed or cancelled jobs run again; this one is {job.state}")
        checkpoint, needs = None, from_column(await conn.fetchval("SELECT fetches FROM jobs WHERE id = $1", job_id))
        if resume:
            if job.kind != "train":
                raise ApiError(409, "not_resumable", "only training jobs resume from a checkpoint: retry it instead")
            checkpoint, needs = await find_checkpoint(js, job_id, job.output_dir, needs)
            if checkpoint is None:
                raise ApiError(
                    409,
                    "no_checkpoint",
                    "the job saved no checkpoint to resume from (see save_steps): retry it from the start instead",
                )
        await queue.check_queue_quota(conn, job.owner_id, settings)
        stages, config, text = with_checkpoint(job.stages, checkpoint[0] if checkpoint else None)
        how = f"resumed from {checkpoint[0].name}" if checkpoint else "retried from the start"
        row = await transition(
            conn,
            job_id,
            "pending",
            from_states=RERUNNABLE,
            reason="resumed" if resume else "retried",
            message=f"{how} by {principal.username}",
            agent_id=None,
            gpu_ids=[],
            cancel_requested=False,
            stop_reason=None,
            metrics=None,
            started_at=None,
            finished_at=None,
            dispatched_at=None,
            wait_reason=None,
            requeues=0,
            stages=stages,
            config=config,
            config_yaml=text,
            fetches=to_column(resuming(needs, None) if checkpoint is None else needs),
            **({} if resume else {"progress": None}),
        )
        if row is None:
            raise ApiError(409, "not_rerunnable", "the job changed meanwhile: look again")
        if not resume:  # a retry from the start is a new MLflow run; a resume goes on in the one it kept
            await store.forget_mlflow_run(conn, job_id)
        # The chart shows this run: all of it after a retry, what follows the checkpoint after a resume.
        after = checkpoint[1] if checkpoint else -1
        await conn.execute("DELETE FROM job_progress WHERE job_id = $1 AND step > $2", job_id, after)
        # Likewise its checkpoints: those a rerun saves again are told again (the ones still in its folder too).
        await conn.execute("DELETE FROM job_checkpoints WHERE job_id = $1 AND step > $2", job_id, after)
    await service.publish_change(nc, row)
    await service.announce_submitted(js, job_id, job.kind, job.owner_id, job.priority, run=row.attempt + 1)


async def find_checkpoint(
    js: JetStreamContext, job_id: str, output_dir: str | None, needs: Fetches
) -> tuple[tuple[Path, int] | None, Fetches]:
    """The job's latest whole checkpoint and its fetches resuming from it: in `objects` mode from CHECKPOINTS (the
    agent that ran it put each one there as it was done, so any agent can resume it), else from its output folder."""
    if not needs.base:
        return latest_checkpoint(output_dir), needs
    output = Path(output_dir or "")
    if not output_dir or not output.is_relative_to(needs.base):
        return None, resuming(needs, None)
    found = await storage.stored_checkpoint(js, job_id, output.relative_to(needs.base).as_posix())
    if found is None:
        return None, resuming(needs, None)
    step, inputs = found
    return (output / f"checkpoint-{step}", step), resuming(needs, list(inputs))


async def resume_step(js: JetStreamContext, job_id: str, output_dir: str | None, needs: Fetches) -> int | None:
    """The step a resume would start from: its newest whole checkpoint, found where `find_checkpoint` looks (the
    store in `objects` mode: one listing); None when there is none, or the store does not answer now."""
    try:
        checkpoint, _ = await find_checkpoint(js, job_id, output_dir, needs)
    except (nats.errors.Error, TimeoutError) as exc:
        log.warning("job %s: its checkpoints could not be listed: %r", job_id, exc)
        return None
    return checkpoint[1] if checkpoint else None


LOST_COLUMNS = (
    "j.id, j.kind, j.agent_id, j.stages, j.output_dir, j.requeues, j.cancel_requested, j.fetches, "
    "coalesce((j.request->>'retries')::int, 1) AS retries"
)


async def requeue_lost(pool: asyncpg.Pool, nc: Client) -> int:
    """The dispatched and running jobs of agents that are offline (or gone): back to the queue while they have
    retries left (a training job resumes from its last checkpoint), else failed with reason `agent_lost`; a
    deployment ends failed. Every sweep looks again, so nothing is missed after a crash. Returns how many
    were re-queued."""
    async with pool.acquire() as conn, conn.transaction():
        jobs = await conn.fetch(
            f"SELECT {LOST_COLUMNS} FROM jobs j LEFT JOIN agents a ON a.id = j.agent_id "
            "WHERE j.state = ANY($1::text[]) AND j.agent_id IS NOT NULL "
            "AND (a.id IS NULL OR a.offline_since IS NOT NULL) FOR UPDATE OF j SKIP LOCKED",
            list(ON_AGENT),
        )
        js = nc.jetstream()
        changed = [
            await _give_back(conn, js, job, "agent_lost", f"agent {job['agent_id']} went offline") for job in jobs
        ]
    return await _announce(nc, changed, "its agent went offline")


DISPATCHED_GRACE_S = 60.0  # a dispatch its online agent has not listed this long was lost there (an agent takes one
# in milliseconds, but one delivered late, e.g. while a NATS node is replaced, must not be given back meanwhile)


async def reconcile_unlisted(
    pool: asyncpg.Pool, nc: Client, grace_s: float, dispatched_grace_s: float = DISPATCHED_GRACE_S
) -> int:
    """The dispatched and running jobs an online agent no longer lists in its heartbeats (it restarted without
    them, or lost them): once unlisted for `grace_s`, back to the queue while they have retries left, else failed
    with reason `lost_on_agent`. An agent lists a job from the moment the dispatch reaches it, before it reports it
    started, so only a beat older than the dispatch can miss one: the grace covers that. A dispatched job counts
    too: an agent killed after it took the dispatch and before its JobStarted went out comes back (same id, beating)
    without it, and the stale-dispatch sweep waits only for agents no longer heard from; it is given the longer
    `dispatched_grace_s`. Returns how many were re-queued."""
    async with pool.acquire() as conn, conn.transaction():
        # Listed again (or listed at last): the clock stops; unlisted: it starts, once. Only rows whose clock changes
        # are written (every running job, every sweep, would be churn).
        await conn.execute(
            """
            UPDATE jobs j SET unlisted_since = CASE WHEN j.unlisted_since IS NULL THEN now() END
            FROM agents a
            WHERE a.id = j.agent_id AND a.offline_since IS NULL AND j.state IN ('dispatched', 'running')
              AND (a.resources->'running_jobs' ? j.id OR a.resources->'running_deployments' ? j.id)
                  = (j.unlisted_since IS NOT NULL)
            """
        )
        jobs = await conn.fetch(
            f"SELECT {LOST_COLUMNS} FROM jobs j JOIN agents a ON a.id = j.agent_id "
            "WHERE j.state IN ('dispatched', 'running') AND a.offline_since IS NULL "
            "AND j.unlisted_since < now() - make_interval("
            "secs => CASE WHEN j.state = 'dispatched' THEN greatest($1::float8, $2::float8) ELSE $1::float8 END) "
            "FOR UPDATE OF j SKIP LOCKED",
            grace_s,
            dispatched_grace_s,
        )
        changed = [
            await _give_back(
                conn,
                nc.jetstream(),
                job,
                "lost_on_agent",
                f"agent {job['agent_id']} no longer runs it (its heartbeats stopped listing it for {grace_s:.0f} s)",
            )
            for job in jobs
        ]
    return await _announce(nc, changed, "its agent no longer ran it")


async def _give_back(
    conn, js: JetStreamContext, job: asyncpg.Record, fail_reason: FinishReason, lost: str
) -> JobChange | None:
    """One lost job: cancelled if a cancel was asked, failed (`fail_reason`) when a deployment or out of retries,
    else back to the queue (a training job resuming from its last checkpoint)."""
    if job["cancel_requested"]:
        return await transition(
            conn, job["id"], "cancelled", from_states=ON_AGENT, reason="cancelled", message=f"cancelled; {lost}"
        )
    if job["kind"] == "deploy" or job["requeues"] >= job["retries"]:
        why = "a deployment is not moved" if job["kind"] == "deploy" else f"no retries left ({job['retries']} allowed)"
        return await transition(
            conn, job["id"], "failed", from_states=ON_AGENT, reason=fail_reason, message=f"{lost} while it ran; {why}"
        )
    checkpoint, needs = None, from_column(job["fetches"])
    if job["kind"] == "train":
        checkpoint, needs = await find_checkpoint(js, job["id"], job["output_dir"], needs)
    stages, config, text = with_checkpoint(job["stages"], checkpoint[0] if checkpoint else None)
    where = f"resumes from {checkpoint[0].name}" if checkpoint else "starts over"
    return await transition(
        conn,
        job["id"],
        "pending",
        from_states=ON_AGENT,
        reason="requeued",
        message=f"{lost}; re-queued ({job['requeues'] + 1} of {job['retries']}), {where}",
        agent_id=None,
        gpu_ids=[],
        started_at=None,
        dispatched_at=None,
        requeues=job["requeues"] + 1,
        stages=stages,
        config=config,
        config_yaml=text,
        fetches=to_column(needs),
    )


async def _announce(nc: Client, changed: list[JobChange | None], why: str) -> int:
    """Tell the live feeds about the jobs given back; returns how many went back to the queue."""
    for row in filter(None, changed):
        log.warning("job %s: %s because %s", row.id, row.state, why)
        await service.publish_change(nc, row)
    return sum(1 for row in changed if row is not None and row.state == "pending")
