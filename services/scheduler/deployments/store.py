"""SQL of deployments: the `deployments` rows beside their `jobs` rows (kind 'deploy'). The scheduler only."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from services.common.contracts import ACTIVE_JOB_STATES, UsageRow
from services.common.readmodels import owner_name_join, user_known
from services.common.text import storable

from ..jobs.transitions import ON_AGENT

COLUMNS = """
    d.id, d.owner_id, u.username AS owner, d.model, d.generation, d.idle_timeout_s, d.ready_at, d.last_request_at,
    d.requests_served, d.tokens_generated, d.created_at, d.engine, d.adapter_slots, d.max_in_flight, d.max_queue,
    d.engine_load, j.state AS job_state, j.reason, j.message, j.agent_id, j.gpu_count, j.gpu_ids, j.estimate,
    j.cancel_requested, j.started_at, j.finished_at, j.priority
"""
FROM = f"deployments d JOIN jobs j ON j.id = d.id {owner_name_join('d.owner_id')}"
USAGE_ROWS_SHOWN = 100  # per deployment, the most recently used first: a page of deployments stays small
MAX_COUNT = 2**53  # what an agent reports per row is clamped to this (and to 0 below): a bigint never overflows


async def insert(
    conn,
    *,
    deployment_id: str,
    owner_id: str,
    model: str,
    generation: dict,
    idle_timeout_s: int,
    adapter_slots: int = 4,
    max_in_flight: int = 16,
    max_queue: int = 64,
) -> None:
    await conn.execute(
        "INSERT INTO deployments (id, owner_id, model, generation, idle_timeout_s, adapter_slots, max_in_flight, "
        "max_queue) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        deployment_id,
        owner_id,
        model,
        generation,
        idle_timeout_s,
        adapter_slots,
        max_in_flight,
        max_queue,
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


async def mark_ready(conn, deployment_id: str, at: datetime, engine: str) -> bool:
    """The engine serving it now (each attempt's agent says, so a re-queued one may change); True the first time."""
    row = await conn.fetchrow(
        "UPDATE deployments SET ready_at = coalesce(ready_at, $2), engine = $3 WHERE id = $1 "
        "RETURNING (ready_at = $2) AS first",
        deployment_id,
        at,
        storable(engine)[:32],  # a ServingEngine; an agent's word, kept short whatever it says
    )
    return bool(row and row["first"])


async def add_usage_rows(conn, deployment_id: str, rows: tuple[UsageRow, ...], at: datetime) -> None:
    """Add each (user, adapter)'s requests and tokens to what the deployment's table holds; a user auth no longer
    knows is left out (the account was deleted meanwhile)."""
    if not rows:
        return
    await conn.execute(
        f"""
        INSERT INTO deployment_usage (deployment_id, user_id, adapter, requests, prompt_tokens, completion_tokens,
                                      last_request_at)
        SELECT $1, r.u, r.a, sum(r.n), sum(r.p), sum(r.c), $7
        FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[]) AS r(u, a, n, p, c)
        WHERE {user_known("r.u")}
        GROUP BY r.u, r.a
        ON CONFLICT (deployment_id, user_id, adapter) DO UPDATE SET
            requests = deployment_usage.requests + EXCLUDED.requests,
            prompt_tokens = deployment_usage.prompt_tokens + EXCLUDED.prompt_tokens,
            completion_tokens = deployment_usage.completion_tokens + EXCLUDED.completion_tokens,
            last_request_at = greatest(deployment_usage.last_request_at, EXCLUDED.last_request_at)
        """,
        deployment_id,
        [storable(r.user_id) for r in rows],
        [storable(r.adapter or "") for r in rows],  # '': the base model
        [_count(r.requests) for r in rows],
        [_count(r.prompt_tokens) for r in rows],
        [_count(r.completion_tokens) for r in rows],
        at,
    )


def _count(value: int) -> int:
    return min(max(value, 0), MAX_COUNT)


async def set_load(conn, deployment_id: str, load: dict) -> None:
    """The engine's load as its agent last saw it, only while the deployment is on an agent: a report that comes
    after its end does not bring back what its end cleared (jobs/transitions.py clears it)."""
    await conn.execute(
        "UPDATE deployments d SET engine_load = $2 FROM jobs j "
        "WHERE d.id = $1 AND j.id = d.id AND j.state = ANY($3::text[])",
        deployment_id,
        load,
        list(ON_AGENT),
    )


async def usage_of(conn, deployment_ids: list[str]) -> dict[str, list[asyncpg.Record]]:
    """Usage by user (their name) and adapter of each deployment, most recent first, at most USAGE_ROWS_SHOWN each:
    one query for a whole page."""
    rows = await conn.fetch(
        f"""
        SELECT * FROM (
            SELECT du.deployment_id, u.username AS user, du.adapter, du.requests, du.prompt_tokens,
                   du.completion_tokens, du.last_request_at,
                   row_number() OVER (PARTITION BY du.deployment_id
                                      ORDER BY du.last_request_at DESC, du.user_id, du.adapter) AS n
            FROM deployment_usage du {owner_name_join("du.user_id")}
            WHERE du.deployment_id = ANY($1::text[])
        ) ranked WHERE n <= $2 ORDER BY deployment_id, n
        """,
        deployment_ids,
        USAGE_ROWS_SHOWN,
    )
    found: dict[str, list[asyncpg.Record]] = {}
    for row in rows:
        found.setdefault(row["deployment_id"], []).append(row)
    return found


async def add_usage(conn, deployment_id: str, requests: int, tokens: int, last_request_at: datetime) -> None:
    await conn.execute(
        "UPDATE deployments SET requests_served = requests_served + $2, tokens_generated = tokens_generated + $3, "
        "last_request_at = greatest(coalesce(last_request_at, $4), $4) WHERE id = $1",
        deployment_id,
        requests,
        tokens,
        last_request_at,
    )
