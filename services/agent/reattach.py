"""After an agent restart: find this agent's containers again and go on with their jobs.

For each container labelled with this agent's id (docs/docker.md, "Agent restarts"):

- running, or exited with its job not reported yet (its state is still on disk): the job is followed
  again from where the last agent stopped: log lines from the saved position, numbered on from the
  last line shipped, trainer_log.jsonl from the saved offset, later stages after this one, and the
  JobFinished as for any job;
- a deployment (kind `deploy`): its model server's port and key lived in the old agent, so the
  container is stopped and the deployment reported `failed` with reason `agent_restarted`;
- exited with no state: reported before (cleanup removes it).

A saved job whose container is gone is reported `failed` (`container_lost`) if it had started.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nats.js import JetStreamContext

from services.common import contracts
from services.common.contracts import FinishReason
from services.common.settings import StoragePaths

from .ending import EndCause, conclude
from .events import Publish
from .logs import LogShipper
from .runtimes.base import EngineRun, FoundEngine, Reattachable
from .savedjob import Cursor, SavedJob, count_lines

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resume:
    """Where a job picked up after an agent restart goes on: the found engine, running stage `stage`."""

    stage: int
    engine: EngineRun
    note: str  # the system line that tells the job's viewers what happened


@dataclass(frozen=True, kw_only=True)
class Agent:
    """What picking jobs up needs from the agent (the runner builds it when its runtime is Reattachable)."""

    runtime: Reattachable
    state_dir: Path  # where the last agent saved its jobs (savedjob.py)
    storage: StoragePaths
    agent_id: str
    js: JetStreamContext  # for the log lines of a job reported lost
    publish: Publish
    go_on: Callable[[SavedJob, Resume], None]  # follows a found job as if this agent had started it


async def pick_up(agent: Agent) -> None:
    """Follow again what this agent's last run left; done before the agent takes new work."""
    try:
        found = await agent.runtime.find_own()
    except Exception as exc:  # noqa: BLE001 - the agent still starts; nothing can be re-attached
        log.warning("could not list this agent's containers, none re-attached: %s", exc)
        return
    for engine in found:
        try:
            await _pick_up_one(agent, engine)
        except Exception:
            log.exception("could not pick up job %s (%s)", engine.job_id, engine.name)
    await _report_lost(agent, {engine.job_id for engine in found})


async def _pick_up_one(agent: Agent, found: FoundEngine) -> None:
    saved = SavedJob.load(agent.state_dir, found.job_id)
    if found.kind == "deploy":
        await _end_deployment(agent, found, saved)
        return
    if saved is None and not found.running:
        return  # its end was reported (or it predates saved jobs): nothing to say
    guessed = saved is None
    if guessed:
        saved = guess_saved(agent, found)
    position = saved.cursor.engine
    if guessed:  # lines Docker stamped before the log file's last write were shipped, most likely
        position = agent.runtime.position_since(found.ref, _mtime(agent.storage.logs / f"{found.job_id}.log"))
    engine = await agent.runtime.attach(found, position)
    how = "still running" if found.running else "exited meanwhile"
    note = f"agent {agent.agent_id} restarted: re-attached to container {found.name} ({how})"
    agent.go_on(saved, Resume(stage=found.stage, engine=engine, note=note))
    log.info("re-attached to %s, job %s (%s)", found.name, found.job_id, how)


def guess_saved(agent: Agent, found: FoundEngine) -> SavedJob:
    """The state of a job found running without one (started by an agent before saved states):
    one stage, the log numbered on from the log file's line count, progress read from the start, the attempt
    from the container's label."""
    lines, size = count_lines(agent.storage.logs / f"{found.job_id}.log")
    stage = contracts.EngineStage(name=found.kind, command=(), config_yaml="")
    order = contracts.JobDispatched(
        job_id=found.job_id,
        kind=found.kind,
        stages=(stage,) * (found.stage + 1),
        output_dir=found.output_dir,
        gpu_ids=found.gpu_ids,
        attempt=found.attempt,
        dispatched_at=datetime.now(UTC),
    )
    return SavedJob(agent.state_dir, order, Cursor(seq=lines, log_bytes=size, started=True))


def _mtime(path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


async def _end_deployment(agent: Agent, found: FoundEngine, saved: SavedJob | None) -> None:
    if found.running:
        await agent.runtime.stop_found(found)
    elif saved is None:
        return
    message = (
        "the agent restarted while this deployment ran; its model server (port and key) could not be "
        "reached again, so it was stopped: deploy the model again"
    )
    await _report(agent, found.job_id, saved, "agent_restarted", message, attempt=found.attempt)
    log.info("stopped deployment %s after the agent restarted", found.job_id)


async def _report_lost(agent: Agent, found_jobs: set[str]) -> None:
    """Saved jobs without a container: a started one is reported lost; one never started is dispatched again."""
    for job_id in SavedJob.saved_jobs(agent.state_dir):
        if job_id in found_jobs:
            continue
        saved = SavedJob.load(agent.state_dir, job_id)
        if saved is None:
            continue
        if saved.cursor.started:
            await _report(
                agent, job_id, saved, "container_lost", "the job's container was gone when the agent restarted"
            )
        else:
            saved.forget()  # its dispatch was never acknowledged: NATS delivers it again


async def _report(
    agent: Agent, job_id: str, saved: SavedJob | None, reason: FinishReason, message: str, attempt: int = 0
) -> None:
    """Publish a job's failure with a last system line in its log, and forget its state; the attempt is the saved
    order's, else `attempt` (the container's label)."""
    path = agent.storage.logs / f"{job_id}.log"
    seq, size = (saved.cursor.seq, saved.cursor.log_bytes) if saved else (count_lines(path)[0], None)
    attempt = saved.order.attempt if saved else attempt
    shipper = LogShipper(agent.js, job_id, path, agent_id=agent.agent_id, attempt=attempt, seq=seq, keep_bytes=size)
    ended = conclude(EndCause(error_reason=reason, error=message))
    shipper.add("system", f"job {ended.state}: {ended.message}")
    await shipper.close()
    await agent.publish(
        contracts.JobFinished(
            job_id=job_id,
            agent_id=agent.agent_id,
            state=ended.state,
            reason=ended.reason,
            message=ended.message,
            attempt=attempt,
            at=datetime.now(UTC),
        ),
        must_arrive=True,
    )
    if saved is not None:
        saved.forget()
