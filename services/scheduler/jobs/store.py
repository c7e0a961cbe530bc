"""SQL of the scheduler: the only writer of jobs, their history and progress, and agents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from services.common.contracts import JobKind, JobState

from .. import rendering
from .fetches import Fetches
from .transitions import ON_AGENT, add_event

SUMMARY_COLUMNS = (
    "id, kind, state, priority, gpu_count, coalesce(request->>'base_model', request->>'model') AS base_model, "
    "agent_id, reason, wait_reason, progress, created_at, started_at, finished_at, "
    "(SELECT f.id FROM fine_tuning_jobs f WHERE f.job_id = jobs.id) AS openai_id"
)
DETAIL_COLUMNS = SUMMARY_COLUMNS + (
    ", owner_id, message, request, config, config_yaml, stages, output_dir, estimate, gpu_ids, metrics, "
    "cancel_requested, attempt, requeues, fetch_progress, tracking"
)


class JobSummaryRow(msgspec.Struct, kw_only=True):
    """A job as `list_jobs` reads it (SUMMARY_COLUMNS)."""

    id: str
    kind: JobKind
    state: JobState
    priority: int
    gpu_count: int
    base_model: str | None
    agent_id: str | None
    reason: str | None
    wait_reason: str | None
    progress: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    openai_id: str | None = None  # its fine-tuning job's id when it was created as one (/v1/fine_tuning/jobs)


class JobRow(JobSummaryRow, kw_only=True):
    """A job as `job_detail` reads it (DETAIL_COLUMNS): what its routes show and its changes start from."""

    owner_id: str
    message: str | None
    request: dict[str, Any]
    config: dict[str, Any]
    config_yaml: str
    stages: list[dict[str, Any]]  # rendering.stage_row of each contracts.EngineStage
    output_dir: str | None
    estimate: dict[str, Any]
    gpu_ids: list[int]
    metrics: dict[str, float] | None
    cancel_requested: bool
    attempt: int
    requeues: int
    fetch_progress: dict[str, Any] | None = None  # the newest JobFetchProgressed, with its attempt
    tracking: dict[str, Any] | None = None  # the tracking it runs with and MLflow's run ids (jobs/tracking.py)


class EvalRow(msgspec.Struct, kw_only=True):
    """An evaluation job as `list_evals` reads it; a JobRow has the same fields."""

    id: str
    state: JobState
    request: dict[str, Any]
    metrics: dict[str, float] | None
    reason: str | None
    created_at: datetime
    finished_at: datetime | None


class Assignment(msgspec.Struct, frozen=True, kw_only=True):
    """Where a job was last dispatched: the agent and attempt whose events it takes."""

    agent_id: str | None
    attempt: int


async def insert_job(
    db,
    *,
    job_id: str,
    owner_id: str,
    kind: JobKind,
    priority: int,
    gpu_count: int,
    request: dict,
    config: dict,
    config_yaml: str,
    stages: list[dict],
    output_dir: str,
    estimate: dict,
    fetches: Fetches | None = None,
    tracking: dict | None = None,
    secret_names: list[str] | None = None,
) -> None:
    """The job and its first history row, or neither; `db` is a pool or a connection already in a transaction.
    `fetches`: what it brings from the object store in `objects` storage mode (jobs/fetches.py)."""
    # What the job reads and leaves, in columns of their own: other services read those, never the config.
    inputs = rendering.job_inputs(kind, request, config)
    output = msgspec.to_builtins(inputs.output) if inputs.output else None
    values = (job_id, owner_id, kind, priority, gpu_count, request, config, config_yaml, stages, output_dir, estimate)
    values += (inputs.dataset_keys, inputs.model_name, output, msgspec.to_builtins(fetches or Fetches()))
    values += (tracking, secret_names or [])
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            await _insert_job(conn, values)
    else:
        await _insert_job(db, values)


async def record_mlflow_run(conn, job_id: str, run_id: str, experiment_id: str) -> None:
    """The MLflow run the agent created for a job that reports to MLflow (a job without MLflow keeps nothing)."""
    await conn.execute(
        "UPDATE jobs SET tracking = jsonb_set(jsonb_set(tracking, '{mlflow,run_id}', to_jsonb($2::text)), "
        "'{mlflow,experiment_id}', to_jsonb($3::text)) WHERE id = $1 AND tracking->'mlflow' IS NOT NULL "
        "AND jsonb_typeof(tracking->'mlflow') = 'object'",
        job_id,
        run_id,
        experiment_id,
    )


async def forget_mlflow_run(conn, job_id: str) -> None:
    """The job's next run is a new MLflow run (a retry from the start): the one it had keeps the earlier curve."""
    await conn.execute(
        "UPDATE jobs SET tracking = tracking #- '{mlflow,run_id}' #- '{mlflow,experiment_id}' "
        "WHERE id = $1 AND jsonb_typeof(tracking->'mlflow') = 'object'",
        job_id,
    )


async def _insert_job(conn, values: tuple) -> None:
    await conn.execute(
        "INSERT INTO jobs (id, owner_id, kind, priority, gpu_count, request, config, config_yaml, stages, "
        "output_dir, estimate, dataset_keys, model_name, output, fetches, tracking, secret_names) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        *values,
    )
    await add_event(conn, values[0], "pending", "submitted", None)


async def job_detail(conn, job_id: str, owner_id: str | None) -> JobRow | None:
    """A job, only when `owner_id` owns it (None: any owner, for admins)."""
    row = await conn.fetchrow(
        f"SELECT {DETAIL_COLUMNS} FROM jobs WHERE id = $1 AND ($2::text IS NULL OR owner_id = $2)",
        job_id,
        owner_id,
    )
    return None if row is None else JobRow(**dict(row))


async def job_history(conn, job_id: str) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT state, reason, message, at FROM job_events WHERE job_id = $1 ORDER BY id", job_id)


async def progress_series(conn, job_id: str, after_step: int = -1, points: int = 1000) -> list[asyncpg.Record]:
    """The job's progress points past `after_step`, at most `points` of them: a longer series is thinned to every
    k-th point, the first and the last always kept. Each row carries `total`, the points there are."""
    return await conn.fetch(
        """
        WITH numbered AS (
            SELECT step, total_steps, loss, eval_loss, learning_rate, epoch, elapsed_s, remaining_s, tokens_seen, at,
                   row_number() OVER (ORDER BY step) - 1 AS n, count(*) OVER () AS total
            FROM job_progress WHERE job_id = $1 AND step > $2
        )
        SELECT step, total_steps, loss, eval_loss, learning_rate, epoch, elapsed_s, remaining_s, tokens_seen, at, total
        FROM numbered
        WHERE total <= $3 OR n = total - 1 OR n % ceil((total - 1)::numeric / ($3 - 1))::bigint = 0
        ORDER BY step
        """,
        job_id,
        after_step,
        points,
    )


async def list_jobs(
    conn,
    *,
    owner_id: str | None,
    state: JobState | None,
    kind: JobKind | None,
    before: tuple[datetime, str] | None,
    limit: int,
    search: str | None = None,
) -> list[JobSummaryRow]:
    """Newest first, keyset-paginated on (created_at, id); `search` matches part of the id or the model."""
    pattern = None
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = await conn.fetch(
        f"""
        SELECT {SUMMARY_COLUMNS} FROM jobs
        WHERE ($1::text IS NULL OR owner_id = $1) AND ($2::text IS NULL OR state = $2)
          AND ($3::text IS NULL OR kind = $3)
          AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))
          AND ($7::text IS NULL OR id ILIKE $7 OR coalesce(request->>'base_model', request->>'model') ILIKE $7)
        ORDER BY created_at DESC, id DESC LIMIT $6
        """,
        owner_id,
        state,
        kind,
        before[0] if before else None,
        before[1] if before else None,
        limit,
        pattern,
    )
    return [JobSummaryRow(**dict(row)) for row in rows]


async def list_evals(
    conn,
    *,
    owner_id: str | None,
    state: JobState | None,
    evaluation: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[EvalRow]:
    """Evaluation jobs, newest first, keyset-paginated like list_jobs, with what their views show."""
    rows = await conn.fetch(
        """
        SELECT id, state, request, metrics, reason, created_at, finished_at FROM jobs
        WHERE kind = 'eval' AND ($1::text IS NULL OR owner_id = $1) AND ($2::text IS NULL OR state = $2)
          AND ($3::text IS NULL OR coalesce(request->>'evaluation', 'loss') = $3)
          AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))
        ORDER BY created_at DESC, id DESC LIMIT $6
        """,
        owner_id,
        state,
        evaluation,
        before[0] if before else None,
        before[1] if before else None,
        limit,
    )
    return [EvalRow(**dict(row)) for row in rows]


async def job_assignment(conn, job_id: str) -> Assignment | None:
    """The agent and attempt a job was last dispatched as, its row locked until the transaction ends (no
    re-queue or dispatch moves it meanwhile); None when there is no such job."""
    row = await conn.fetchrow("SELECT agent_id, attempt FROM jobs WHERE id = $1 FOR UPDATE", job_id)
    return None if row is None else Assignment(agent_id=row["agent_id"], attempt=row["attempt"])


async def live_agents(conn, within_s: float) -> list[asyncpg.Record]:
    """Agents that may take new work: heard from lately, not offline, not draining."""
    return await conn.fetch(
        "SELECT id, gpus, cpu_slots, engines, last_seen FROM agents "
        "WHERE last_seen > now() - make_interval(secs => $1) AND offline_since IS NULL AND NOT draining ORDER BY id",
        within_s,
    )


async def any_agents(conn) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT id, gpus, cpu_slots, engines FROM agents")


async def agent_engines(conn, within_s: float) -> list[list[str]]:
    """The serving engines of each agent heard from lately and not offline (draining ones too: they come back)."""
    rows = await conn.fetch(
        "SELECT engines FROM agents WHERE last_seen > now() - make_interval(secs => $1) AND offline_since IS NULL",
        within_s,
    )
    return [list(row["engines"]) for row in rows]


async def busy_slots(conn) -> list[asyncpg.Record]:
    """What the dispatched and running jobs hold on each agent."""
    return await conn.fetch(
        "SELECT agent_id, gpu_count, gpu_ids FROM jobs WHERE state = ANY($1::text[]) AND agent_id IS NOT NULL",
        list(ON_AGENT),
    )


async def insert_progress(conn, job_id: str, point: dict) -> str | None:
    """Store a progress point; the job's owner when it is the job's newest (for live charts), else None."""
    await conn.execute(
        """
        INSERT INTO job_progress (job_id, step, total_steps, loss, eval_loss, learning_rate, epoch, elapsed_s,
                                  remaining_s, tokens_seen)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        ON CONFLICT (job_id, step) DO UPDATE SET  -- a validation pass logged at a step already logged: merge
            loss = coalesce(job_progress.loss, EXCLUDED.loss),
            eval_loss = coalesce(job_progress.eval_loss, EXCLUDED.eval_loss),
            learning_rate = coalesce(job_progress.learning_rate, EXCLUDED.learning_rate),
            tokens_seen = greatest(job_progress.tokens_seen, EXCLUDED.tokens_seen)
        """,
        job_id,
        point["step"],
        point["total_steps"],
        point.get("loss"),
        point.get("eval_loss"),
        point.get("learning_rate"),
        point.get("epoch"),
        point.get("elapsed_s"),
        point.get("remaining_s"),
        point.get("tokens_seen"),
    )
    # The engine repeats the last step in its closing summary, without a loss: keep the first.
    return await conn.fetchval(
        "UPDATE jobs SET progress = $2, updated_at = now() WHERE id = $1 AND state = 'running' "
        "AND (progress IS NULL OR (progress->>'step')::int < $3) RETURNING owner_id",
        job_id,
        point,
        point["step"],
    )


async def record_fetch_progress(conn, job_id: str, report: dict) -> None:
    """Keep a running job's newest input fetch report (only the newest: the page shows where the fetch is)."""
    await conn.execute(
        "UPDATE jobs SET fetch_progress = $2, updated_at = now() WHERE id = $1 AND state = 'running'", job_id, report
    )


async def stale_dispatches(conn, older_than_s: float, agent_alive_s: float) -> list[asyncpg.Record]:
    """Dispatched jobs whose agent never took them and is no longer heard from."""
    return await conn.fetch(
        """
        SELECT j.id, j.cancel_requested FROM jobs j LEFT JOIN agents a ON a.id = j.agent_id
        WHERE j.state = 'dispatched' AND j.dispatched_at < now() - make_interval(secs => $1)
          AND (a.id IS NULL OR a.last_seen < now() - make_interval(secs => $2))
        """,
        older_than_s,
        agent_alive_s,
    )


async def unanswered_cancels(conn, grace_s: float) -> list[asyncpg.Record]:
    """Jobs on an agent asked to stop longer than `grace_s` ago that the agent never reported as ended."""
    return await conn.fetch(
        """
        SELECT j.id, j.stop_reason FROM jobs j
        WHERE j.cancel_requested AND j.state = ANY($1::text[])
          AND (SELECT max(e.at) FROM job_events e WHERE e.job_id = j.id AND e.reason = 'cancel_requested')
              < now() - make_interval(secs => $2)
        """,
        list(ON_AGENT),
        grace_s,
    )


async def stop_reason(conn, job_id: str) -> str | None:
    """Why the platform asked the job to stop (`time_limit`), or None (a person, or nobody)."""
    return await conn.fetchval("SELECT stop_reason FROM jobs WHERE id = $1", job_id)


async def over_time_limit(conn, default_h: float) -> list[asyncpg.Record]:
    """Running jobs (deployments aside) not yet asked to stop that ran longer than their owner's maximum run time
    (an admin's setting for the owner, else `default_h`), locked for this pass."""
    return await conn.fetch(
        """
        SELECT j.id, j.state, coalesce(q.max_run_h, $1) AS limit_h FROM jobs j
        LEFT JOIN user_quotas q ON q.user_id = j.owner_id
        WHERE j.state = 'running' AND j.kind <> 'deploy' AND NOT j.cancel_requested
          AND j.started_at < now() - make_interval(secs => coalesce(q.max_run_h, $1) * 3600)
        FOR UPDATE OF j SKIP LOCKED
        """,
        default_h,
    )


async def cancel_pending_running(conn) -> list[asyncpg.Record]:
    """Jobs asked to stop that an agent still runs: the cancel is sent again."""
    return await conn.fetch("SELECT id FROM jobs WHERE cancel_requested AND state = ANY($1::text[])", list(ON_AGENT))


# --- checkpoints (JobCheckpointSaved / JobCheckpointRemoved) -------------------------------------------------------


async def insert_checkpoint(
    conn,
    *,
    job_id: str,
    step: int,
    saved_at: datetime,
    attempt: int,
    agent_id: str,
    train_loss: float | None,
    valid_loss: float | None,
    epoch: float | None,
) -> str | None:
    """Record a saved checkpoint; the job's owner when it is new (a repeated report changes nothing: None). A loss
    the agent did not read from the trainer state is the newest logged at or before the step (job_progress)."""
    return await conn.fetchval(
        """
        INSERT INTO job_checkpoints (job_id, step, saved_at, attempt, agent_id, train_loss, valid_loss, epoch)
        SELECT $1, $2, $3, $4, $5,
            coalesce($6::float8, (SELECT p.loss FROM job_progress p WHERE p.job_id = $1 AND p.step <= $2
                                  AND p.loss IS NOT NULL ORDER BY p.step DESC LIMIT 1)),
            coalesce($7::float8, (SELECT p.eval_loss FROM job_progress p WHERE p.job_id = $1 AND p.step <= $2
                                  AND p.eval_loss IS NOT NULL ORDER BY p.step DESC LIMIT 1)),
            $8
        ON CONFLICT (job_id, step) DO NOTHING
        RETURNING (SELECT owner_id FROM jobs WHERE id = $1)
        """,
        job_id,
        step,
        saved_at,
        attempt,
        agent_id,
        train_loss,
        valid_loss,
        epoch,
    )


async def delete_checkpoint(conn, job_id: str, step: int) -> bool:
    return await conn.execute("DELETE FROM job_checkpoints WHERE job_id = $1 AND step = $2", job_id, step) != "DELETE 0"


async def job_checkpoints(conn, job_id: str) -> list[asyncpg.Record]:
    """The job's recorded checkpoints, newest first."""
    return await conn.fetch(
        "SELECT step, saved_at, train_loss, valid_loss, epoch FROM job_checkpoints WHERE job_id = $1 "
        "ORDER BY step DESC",
        job_id,
    )
