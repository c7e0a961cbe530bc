"""SQL of deployments: the `deployments` rows beside their `jobs` rows (kind 'deploy'). The scheduler only."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from services.common.contracts import ACTIVE_JOB_STATES
from services.common.readmodels import owner_name_join

COLUMNS = """
    d.id, d.owner_id, u.username AS owner, d.model, d.generation, d.idle_timeout_s, d.ready_at, d.last_request_at,
    d.requests_served, d.tokens_generated, d.created_at, j.state AS job_state, j.reason, j.message, j.agent_id,
    j.gpu_count, j.gpu_ids, j.estimate, j.cancel_requested, j.started_at, j.finished_at, j.priority
"""
FROM = f"deployments d JOIN jobs j ON j.id = d.id {owner_name_join('d.owner_id')}"


async def insert(conn, *, deployment_id: str, owner_id: str, model: str, generation: dict, idle_timeout_s: int) -> None:
    await conn.execute(
        "INSERT INTO deployments (id, owner_id, model, generation, idle_timeout_s) VALUES ($1, $2, $3, $4, $5)",
        deployment_id,
        owner_id,
        model,
        generation,
        idle_timeout_s,
    )


async def lock_owner(conn, owner_id: str) -> None:
    """Serialise one owner's deployment requests until the transaction ends (the per-user limit)."""
    await conn.execute("SELECT pg_advisory_xact_lock(7002, hashtext($1))", owner_id)


async def active_of(conn, owner_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {COLUMNS} FROM {FROM} WHERE d.owner_id = $1 AND j.state = ANY($2::text[]) ORDER BY d.created_at",
        owner_id,
        list(ACTIVE_JOB_STATES),
    )


async def get(conn, deployment_id: str, owner_id: str | None) -> asyncpg.Record | None:
    """A deployment, only when `owner_id` owns it (None: any, for admins)."""
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM {FROM} WHERE d.id = $1 AND ($2::text IS NULL OR d.owner_id = $2)",
        deployment_id,
        owner_id,
    )


async def list_for(
    conn, *, owner_id: str | None, active_only: bool, before: tuple[datetime, str] | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""
        SELECT {COLUMNS} FROM {FROM}
        WHERE ($1::text IS NULL OR d.owner_id = $1) AND (NOT $2 OR j.state = ANY($3::text[]))
          AND ($4::timestamptz IS NULL OR (d.created_at, d.id) < ($4, $5))
        ORDER BY d.created_at DESC, d.id DESC LIMIT $6
        """,
        owner_id,
        active_only,
        list(ACTIVE_JOB_STATES),
        before[0] if before else None,
        before[1] if before else None,
        limit,
    )


async def mark_ready(conn, deployment_id: str, at: datetime) -> bool:
    row = await conn.fetchrow(
        "UPDATE deployments SET ready_at = coalesce(ready_at, $2) WHERE id = $1 RETURNING (ready_at = $2) AS first",
        deployment_id,
        at,
    )
    return bool(row and row["first"])


async def add_usage(conn, deployment_id: str, requests: int, tokens: int, last_request_at: datetime) -> None:
    await conn.execute(
        "UPDATE deployments SET requests_served = requests_served + $2, tokens_generated = tokens_generated + $3, "
        "last_request_at = greatest(coalesce(last_request_at, $4), $4) WHERE id = $1",
        deployment_id,
        requests,
        tokens,
        last_request_at,
    )
