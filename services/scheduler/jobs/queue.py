"""The order of the queue and who may take more: priority first, then fair share between users (the one with
the fewest GPU-hours in the recent window goes first), then age; per-user quotas on GPUs held at once and
on queued jobs. The dispatcher (service.dispatch_pending) follows this order; a job that cannot go now keeps
the reason in `jobs.wait_reason`, and its position is computed on read."""

from __future__ import annotations

from collections import defaultdict

import asyncpg
import msgspec

from services.common.errors import ApiError
from services.common.security import Principal

from ..settings import SchedulerSettings

# GPU-hours of each owner in the window: running jobs count up to now.
USAGE = """
    usage AS (
        SELECT owner_id, sum(gpu_count * extract(epoch FROM
                   coalesce(finished_at, now())
                   - greatest(started_at, now() - make_interval(secs => $1::float8 * 3600)))
               ) / 3600.0 AS gpu_hours
        FROM jobs
        WHERE gpu_count > 0 AND started_at IS NOT NULL
          AND coalesce(finished_at, now()) > now() - make_interval(secs => $1::float8 * 3600)
        GROUP BY owner_id
    )
"""
ORDER = "j.priority DESC, coalesce(u.gpu_hours, 0), j.created_at, j.id"


class Quota(msgspec.Struct, kw_only=True, frozen=True):
    max_gpus: int | None
    max_queued: int
    max_deployments: int
    max_priority: int
    max_run_h: float


async def pending(conn, window_h: float, limit: int = 200) -> list[asyncpg.Record]:
    """Pending jobs in dispatch order, locked for this pass."""
    return await conn.fetch(
        f"""
        WITH {USAGE}
        SELECT j.id, j.kind, j.owner_id, j.gpu_count, j.stages, j.output_dir, j.attempt, j.estimate, j.wait_reason,
            j.fetches, j.secret_names, j.tracking->'mlflow'->>'run_id' AS mlflow_run_id
        FROM jobs j LEFT JOIN usage u ON u.owner_id = j.owner_id
        WHERE j.state = 'pending' ORDER BY {ORDER} LIMIT $2 FOR UPDATE OF j SKIP LOCKED
        """,
        window_h,
        limit,
    )


async def positions(conn, job_ids: list[str], window_h: float) -> dict[str, int]:
    """Where each of these jobs stands in the queue (1 goes next); jobs not pending are left out."""
    rows = await conn.fetch(
        f"""
        WITH {USAGE}, ranked AS (
            SELECT j.id, row_number() OVER (ORDER BY {ORDER}) AS position
            FROM jobs j LEFT JOIN usage u ON u.owner_id = j.owner_id WHERE j.state = 'pending'
        )
        SELECT id, position FROM ranked WHERE id = ANY($2::text[])
        """,
        window_h,
        job_ids,
    )
    return {row["id"]: row["position"] for row in rows}


async def position(conn, job_id: str, window_h: float) -> int | None:
    """1 for the job that goes next, None when the job is not pending."""
    return (await positions(conn, [job_id], window_h)).get(job_id)


async def gpu_hours(conn, owner_id: str, window_h: float) -> float:
    value = await conn.fetchval(f"WITH {USAGE} SELECT gpu_hours FROM usage WHERE owner_id = $2", window_h, owner_id)
    return float(value or 0.0)


async def held_gpus(conn) -> dict[str, int]:
    """GPUs each owner's dispatched and running jobs hold."""
    rows = await conn.fetch(
        "SELECT owner_id, sum(gpu_count)::int AS gpus FROM jobs "
        "WHERE state IN ('dispatched', 'running') GROUP BY owner_id"
    )
    return defaultdict(int, {r["owner_id"]: r["gpus"] for r in rows})


async def quotas(conn, owner_ids: list[str], settings: SchedulerSettings) -> dict[str, Quota]:
    """Each owner's limits: an admin's setting, else the platform's default."""
    rows = {
        r["user_id"]: r
        for r in await conn.fetch(
            "SELECT user_id, max_gpus, max_queued, max_deployments, max_priority, max_run_h FROM user_quotas "
            "WHERE user_id = ANY($1::text[])",
            owner_ids,
        )
    }
    result = {}
    for owner in owner_ids:
        row = rows.get(owner)
        result[owner] = Quota(
            max_gpus=_pick(row, "max_gpus", settings.max_gpus_per_user),
            max_queued=_pick(row, "max_queued", settings.max_queued_per_user),
            max_deployments=_pick(row, "max_deployments", settings.max_deployments),
            max_priority=_pick(row, "max_priority", settings.max_priority),
            max_run_h=_pick(row, "max_run_h", settings.max_run_h),
        )
    return result


def _pick(row, column: str, default):
    """An admin's setting for the user when there is one, else the platform's default."""
    return row[column] if row is not None and row[column] is not None else default


async def check_queue_quota(conn, owner_id: str, settings: SchedulerSettings) -> None:
    """Refuse a new job when the owner already has as many queued as their quota allows."""
    quota = (await quotas(conn, [owner_id], settings))[owner_id]
    queued = await conn.fetchval("SELECT count(*) FROM jobs WHERE owner_id = $1 AND state = 'pending'", owner_id)
    if queued >= quota.max_queued:
        raise ApiError(
            429,
            "queue_quota",
            f"you have {queued} jobs waiting and may queue {quota.max_queued}: wait "
            "for some to start, cancel some, or ask an admin to raise your quota",
            headers={"Retry-After": "30"},
        )


async def check_priority(conn, principal: Principal, priority: int, settings: SchedulerSettings) -> None:
    """Refuse a priority above what an admin granted the user (the platform's default: LLMCT_MAX_PRIORITY); an
    admin may ask any."""
    if principal.is_admin:
        return
    allowed = (await quotas(conn, [principal.user_id], settings))[principal.user_id].max_priority
    if priority > allowed:
        raise ApiError(
            422,
            "priority_not_granted",
            f"priority {priority} is above what you may ask ({allowed}): submit with priority {allowed} or lower, "
            "or ask an admin to grant you more",
            "priority",
        )


def over_gpu_quota(quota: Quota, held: int, gpu_count: int) -> str | None:
    """Why the job must wait for the owner's own jobs to finish, or None."""
    if quota.max_gpus is None or gpu_count == 0 or held + gpu_count <= quota.max_gpus:
        return None
    return (
        f"waiting for your GPU quota: your jobs hold {held} of {quota.max_gpus} GPU(s) and this one needs {gpu_count}"
    )


def no_room(gpu_count: int, per_gpu_mb: int, engine: str | None = None) -> str:
    where = "an online agent with vLLM" if engine == "vllm" else "an online agent"
    if gpu_count == 0:
        return f"waiting for a free CPU slot on {where}"
    return f"waiting for {gpu_count} free GPU(s) with {per_gpu_mb} MB each on {where}"


async def set_wait_reason(conn, job_id: str, reason: str | None, current: str | None) -> None:
    if reason != current:
        await conn.execute("UPDATE jobs SET wait_reason = $2 WHERE id = $1 AND state = 'pending'", job_id, reason)
