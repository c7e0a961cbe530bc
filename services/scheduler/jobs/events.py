"""What agents report about their jobs: applied only when it comes from the job's agent, for its attempt.

The subject `job.status.<agent_id>.<job_id>` names the sender, and NATS vouches for it: an agent's user may
publish only its own (services/common/nats_auth.py). Each event also carries the attempt of the dispatch it
answers. A job re-queued after its agent was lost, retried, or dispatched again (to another agent or the same
one) has a new agent or attempt, so what the old run still sends is dropped, as is anything from an agent the
job was never given. The job's row stays locked while an event is checked and applied, so no re-queue or
dispatch slips in between.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import asyncpg
import msgspec
from nats.aio.client import Client

from services.common import contracts
from services.common.contracts import Subjects
from services.common.text import storable

from ..deployments import store as deployments_store
from ..openai import mapping
from ..webhooks import outbox
from . import store
from .service import publish_change
from .store import Assignment
from .transitions import ON_AGENT, JobChange, add_event, transition

log = logging.getLogger(__name__)

PROGRESS_FIELDS = (
    "step",
    "total_steps",
    "loss",
    "eval_loss",
    "learning_rate",
    "epoch",
    "elapsed_s",
    "remaining_s",
    "tokens_seen",
)


def refusal(event: contracts.JobEvent, sender: str | None, job: Assignment | None) -> str | None:
    """Why `event`, published by agent `sender` (None: its subject names none), may not touch `job` (its
    `agent_id` and `attempt`; None: no such job); None when it may."""
    if sender is None:
        return "its subject is not job.status.<agent_id>.<job_id> for this job"
    if job is None:
        return "no such job"
    if job.agent_id != sender:
        return f"the job is not on this agent (it is on {job.agent_id or 'none'})"
    claimed = getattr(event, "agent_id", sender)  # JobProgressed and DeploymentUsage name no agent
    if claimed != sender:
        return f"the event claims to come from agent {claimed}"
    if event.attempt != job.attempt:
        return f"it is about attempt {event.attempt}; the job's current attempt is {job.attempt}"
    return None


async def record_job_event(pool: asyncpg.Pool, nc: Client, event: contracts.JobEvent, subject: str) -> bool:
    """Apply what an agent reported on `subject` if the job is that agent's, for this attempt; repeated or late
    events change nothing. False when the event was dropped (and a warning logged)."""
    sender = Subjects.job_status_sender(subject, event.job_id)
    async with pool.acquire() as conn, conn.transaction():
        job = await store.job_assignment(conn, event.job_id)
        why = refusal(event, sender, job)
        if why is None:
            row, point = await _apply(conn, event)
    if why is not None:
        log.warning(
            "dropped %s from agent %s for job %s (on %s): %s",
            type(event).__name__,
            sender or "?",
            event.job_id,
            subject,
            why,
        )
        return False
    if row is not None:
        await publish_change(nc, row)
    if point is not None:  # live charts: the point, once committed
        owner, progress = point
        await nc.publish(
            Subjects.job_changed(owner, event.job_id),
            contracts.encode(
                contracts.JobChanged(job_id=event.job_id, state="running", at=datetime.now(UTC), progress=progress)
            ),
        )
    return True


async def _apply(conn, event: contracts.JobEvent) -> tuple[JobChange | None, tuple[str, dict] | None]:
    """The event's change, in the caller's transaction: (the job row for live feeds, a new progress point)."""
    match event:
        case contracts.JobStarted():
            return await transition(
                conn,
                event.job_id,
                "running",
                reason="started",
                message=f"{event.runtime} on {event.agent_id}",
                started_at=event.at,
            ), None
        case contracts.JobProgressed():
            progress = {name: getattr(event, name) for name in PROGRESS_FIELDS}
            owner = await store.insert_progress(conn, event.job_id, progress)
            return None, (owner, progress) if owner else None
        case contracts.JobFetchProgressed():
            report = {
                "attempt": event.attempt,
                "input": storable(event.input),  # a file's name may hold a NUL, which jsonb refuses
                "done_bytes": event.done_bytes,
                "total_bytes": event.total_bytes,
                "at": event.at.isoformat(),
            }
            await store.record_fetch_progress(conn, event.job_id, report)
            return None, None
        case contracts.JobTracked():
            await store.record_mlflow_run(conn, event.job_id, event.mlflow_run_id, event.mlflow_experiment_id)
            return None, None
        case contracts.JobFinished():
            message = event.message
            if event.last_lines:
                message = f"{message}\n--- last log lines ---\n" + "\n".join(event.last_lines)
            message = storable(message) if message else message  # an engine's last lines may hold a NUL
            state, reason = event.state, event.reason or event.state
            if state == "cancelled" and await store.stop_reason(conn, event.job_id) == "time_limit":
                state, reason = "failed", "time_limit"  # the platform stopped it, not a person
                message = "stopped: it ran past its maximum run time (resume it from a checkpoint, or ask for more)"
            return await transition(
                conn,
                event.job_id,
                state,
                from_states=ON_AGENT,
                reason=reason,
                message=message,
                metrics=event.metrics or None,
            ), None
        case contracts.JobCheckpointSaved():
            await record_checkpoint(conn, event)
            return None, None
        case contracts.JobCheckpointRemoved():
            await store.delete_checkpoint(conn, event.job_id, event.step)
            return None, None
        case contracts.DeploymentReady():
            if not await deployments_store.mark_ready(conn, event.job_id, event.at, event.engine):
                return None, None
            await add_event(conn, event.job_id, "running", "ready", f"the model server answers ({event.engine})")
            row = await conn.fetchrow("SELECT id, owner_id, state FROM jobs WHERE id = $1", event.job_id)
            if row is not None:
                await outbox.for_owner(conn, row["owner_id"], "deployment.ready", "deployment", event.job_id)
            return (JobChange(**dict(row)) if row else None), None
        case contracts.DeploymentUsage():
            await record_usage(conn, event)
            return None, None


async def record_checkpoint(conn, event: contracts.JobCheckpointSaved) -> None:
    """A checkpoint the job's trainer saved: its row, and (the first time it is told) a `checkpoint.saved` webhook
    to the owner's endpoints; a fine-tuning job's delivery names its OpenAI ids too."""
    owner = await store.insert_checkpoint(
        conn,
        job_id=event.job_id,
        step=event.step,
        saved_at=event.at,
        attempt=event.attempt,
        agent_id=event.agent_id,
        train_loss=event.train_loss,
        valid_loss=event.valid_loss,
        epoch=event.epoch,
    )
    if owner is None:
        return
    data: dict = {"step": event.step}
    ftjob_id = await conn.fetchval("SELECT id FROM fine_tuning_jobs WHERE job_id = $1", event.job_id)
    if ftjob_id is not None:
        data |= {"fine_tuning_job_id": ftjob_id, "checkpoint_id": mapping.checkpoint_id(ftjob_id, event.step)}
    await outbox.checkpoint_saved(conn, owner, event.job_id, data)


async def record_usage(conn, event: contracts.DeploymentUsage) -> None:
    """A deployment's usage report: its totals, the rows by user and adapter added up, the engine's load kept with
    the time it came. A report of load alone (nothing asked since the last) leaves the idle timer as it was."""
    if event.requests or event.tokens:
        await deployments_store.add_usage(conn, event.job_id, event.requests, event.tokens, event.last_request_at)
    await deployments_store.add_usage_rows(conn, event.job_id, event.usage, event.last_request_at)
    if event.load is not None:
        load = msgspec.to_builtins(event.load)
        for adapter in load["adapters"]:
            adapter["name"] = storable(adapter["name"])  # jsonb refuses a NUL
        await deployments_store.set_load(conn, event.job_id, {**load, "at": datetime.now(UTC).isoformat()})


async def fail_for_bad_event(pool: asyncpg.Pool, nc: Client, subject: str, why: str) -> JobChange | None:
    """The job's agent sent an event the scheduler cannot read or store (kept in DEAD_LETTERS): the job fails with
    `bad_event` instead of staying `running` for ever, and its agent is told to stop it. Only when the subject's
    agent is the job's agent (NATS vouches for the subject) and the job is on it."""
    parts = Subjects.job_status_parts(subject)
    if parts is None:
        return None
    agent_id, job_id = parts
    message = f"the agent's report could not be read or stored ({why}); it is kept in DEAD_LETTERS"
    async with pool.acquire() as conn, conn.transaction():
        job = await store.job_assignment(conn, job_id)
        if job is None or job.agent_id != agent_id:
            log.warning("a bad event on %s names no job of agent %s: nothing to fail", subject, agent_id)
            return None
        change = await transition(conn, job_id, "failed", from_states=ON_AGENT, reason="bad_event", message=message)
    if change is not None:
        await publish_change(nc, change)
        await nc.publish(Subjects.job_cancel(job_id), contracts.encode(contracts.JobCancelRequested(job_id=job_id)))
    return change
