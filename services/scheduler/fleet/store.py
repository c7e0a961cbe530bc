"""SQL of the fleet: the agent registry (written from heartbeats, drain, offline and removal) and the resource
history, kept as raw samples (step_s 0), 1-minute (60) and 1-hour (3600) averages that never overlap in time."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

HOST_COLUMNS = ("cpu_pct", "memory_used_mb", "memory_total_mb", "running_jobs")
GPU_COLUMNS = ("utilization_pct", "memory_used_mb", "memory_total_mb", "temperature_c", "power_w")
ORIGIN = "TIMESTAMPTZ 'epoch'"

# Silence beyond the offline timeout reads as offline even before the sweep has written it.
STATE = (
    "CASE WHEN offline_since IS NOT NULL OR last_seen < now() - make_interval(secs => $1::float8) "
    "THEN 'offline' WHEN draining THEN 'draining' ELSE 'online' END"
)
AGENT_COLUMNS = (
    "id, hostname, gpus, cpu_slots, resources, version, runtime, engines, draining, offline_since, first_seen, "
    f"last_seen, last_beat_at, {STATE} AS state"
)


async def record_beats(conn, rows: list[tuple]) -> list[asyncpg.Record]:
    """Upsert the newest heartbeat of each agent (rows as `beat_row` builds them); an unknown agent is registered.
    Returns (id, registered) per agent."""
    rows = sorted(rows, key=lambda row: row[0])  # one lock order for every replica: no deadlocks between them
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True))  # tuples, two of them replaced by lists below
    # JSON travels as text: asyncpg would read a list inside an array parameter as one more dimension.
    columns[2] = [json.dumps(v) for v in columns[2]]
    columns[4] = [json.dumps(v) for v in columns[4]]
    columns[8] = [json.dumps(v) for v in columns[8]]  # a text[] per agent: unnest would flatten a 2-D array
    return await conn.fetch(
        """
        INSERT INTO agents (id, hostname, gpus, cpu_slots, resources, version, runtime, last_beat_at, engines)
        SELECT i, h, g::jsonb, c, r::jsonb, v, rt, b, ARRAY(SELECT jsonb_array_elements_text(e::jsonb))
        FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[],
            $8::timestamptz[], $9::text[]) AS u(i, h, g, c, r, v, rt, b, e)
        ON CONFLICT (id) DO UPDATE SET hostname = EXCLUDED.hostname, gpus = EXCLUDED.gpus,
            cpu_slots = EXCLUDED.cpu_slots, resources = EXCLUDED.resources, version = EXCLUDED.version,
            runtime = EXCLUDED.runtime, last_beat_at = EXCLUDED.last_beat_at, engines = EXCLUDED.engines,
            last_seen = now(), offline_since = NULL
        RETURNING id, (xmax = 0) AS registered
        """,
        *columns,
    )


async def insert_samples(conn, host_rows: list[tuple], gpu_rows: list[tuple]) -> None:
    """Raw samples: (agent_id, at, samples, *HOST_COLUMNS) and (agent_id, at, gpu_index, samples, *GPU_COLUMNS)."""
    if host_rows:
        await conn.execute(
            f"INSERT INTO agent_metrics (agent_id, step_s, at, samples, {', '.join(HOST_COLUMNS)}) "
            "SELECT a, 0, t, n, c, mu, mt, j FROM unnest($1::text[], $2::timestamptz[], $3::int[], $4::real[], "
            "$5::real[], $6::real[], $7::real[]) AS u(a, t, n, c, mu, mt, j) ON CONFLICT DO NOTHING",
            *zip(*host_rows, strict=True),
        )
    if gpu_rows:
        await conn.execute(
            f"INSERT INTO agent_gpu_metrics (agent_id, step_s, at, gpu_index, samples, {', '.join(GPU_COLUMNS)}) "
            "SELECT a, 0, t, g, n, u, mu, mt, tc, p FROM unnest($1::text[], $2::timestamptz[], $3::smallint[], "
            "$4::int[], $5::real[], $6::real[], $7::real[], $8::real[], $9::real[]) AS x(a, t, g, n, u, mu, mt, tc, p) "
            "ON CONFLICT DO NOTHING",
            *zip(*gpu_rows, strict=True),
        )


async def mark_offline(conn, offline_after_s: float) -> list[asyncpg.Record]:
    """Agents silent for longer than the timeout become offline (once); returns them."""
    return await conn.fetch(
        "UPDATE agents SET offline_since = last_seen + make_interval(secs => $1::float8) "
        "WHERE offline_since IS NULL AND last_seen < now() - make_interval(secs => $1::float8) RETURNING id, last_seen",
        offline_after_s,
    )


async def remove_long_offline(conn, remove_after_s: float) -> list[str]:
    """Forget agents offline for longer than `remove_after_s`; returns their ids."""
    rows = await conn.fetch(
        "DELETE FROM agents WHERE offline_since < now() - make_interval(secs => $1::float8) RETURNING id",
        remove_after_s,
    )
    return [r["id"] for r in rows]


def _weighted(column: str) -> str:
    """The sample-weighted average of a column over a group, ignoring missing readings."""
    return f"sum({column} * samples) / nullif(sum(samples) FILTER (WHERE {column} IS NOT NULL), 0)"


def _merged(table: str, column: str) -> str:
    """A bucket rolled up twice (a late row, two replicas): merge both averages by their sample counts."""
    old, new = f"{table}.{column}", f"EXCLUDED.{column}"
    return (
        f"{column} = CASE WHEN {old} IS NULL THEN {new} WHEN {new} IS NULL THEN {old} ELSE "
        f"({old} * {table}.samples + {new} * EXCLUDED.samples) / ({table}.samples + EXCLUDED.samples) END"
    )


async def roll_up(conn, table: str, from_step: int, to_step: int, keep_s: float) -> str:
    """Replace the `from_step` rows older than `keep_s` by `to_step` averages, whole buckets at a time."""
    columns, keys = (GPU_COLUMNS, "agent_id, gpu_index") if table == "agent_gpu_metrics" else (HOST_COLUMNS, "agent_id")
    bucket = f"date_bin(make_interval(secs => $2::int), at, {ORIGIN})"
    cutoff = f"date_bin(make_interval(secs => $2::int), now() - make_interval(secs => $3::float8), {ORIGIN})"
    merges = ", ".join([f"samples = {table}.samples + EXCLUDED.samples"] + [_merged(table, c) for c in columns])
    return await conn.execute(
        f"""
        WITH moved AS (DELETE FROM {table} WHERE step_s = $1::int AND at < {cutoff} RETURNING *)
        INSERT INTO {table} ({keys}, step_s, at, samples, {", ".join(columns)})
        SELECT {keys}, $2::int, {bucket}, sum(samples), {", ".join(_weighted(c) for c in columns)}
        FROM moved GROUP BY {keys}, {bucket}
        ON CONFLICT ({keys}, step_s, at) DO UPDATE SET {merges}
        """,
        from_step,
        to_step,
        keep_s,
    )


async def expire(conn, table: str, max_age_s: float) -> str:
    """Delete every row older than the longest retention."""
    return await conn.execute(f"DELETE FROM {table} WHERE at < now() - make_interval(secs => $1::float8)", max_age_s)


async def list_agents(conn, offline_after_s: float) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {AGENT_COLUMNS} FROM agents ORDER BY id", offline_after_s)


async def get_agent(conn, agent_id: str, offline_after_s: float) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {AGENT_COLUMNS} FROM agents WHERE id = $2", offline_after_s, agent_id)


async def set_draining(conn, agent_id: str, draining: bool, offline_after_s: float) -> asyncpg.Record | None:
    """Drain (no new work) or undrain an agent; None when it is not registered."""
    return await conn.fetchrow(
        f"UPDATE agents SET draining = $3 WHERE id = $2 RETURNING {AGENT_COLUMNS}", offline_after_s, agent_id, draining
    )


async def held_slots(conn) -> list[asyncpg.Record]:
    """What dispatched and running jobs hold, per agent, with the jobs' ids and kinds."""
    return await conn.fetch(
        "SELECT id, kind, agent_id, gpu_count, gpu_ids FROM jobs "
        "WHERE state IN ('dispatched', 'running') AND agent_id IS NOT NULL"
    )


async def job_placement(conn, job_id: str, owner_id: str | None) -> asyncpg.Record | None:
    """Where and when a job ran, only when `owner_id` owns it (None: any owner, for admins)."""
    return await conn.fetchrow(
        "SELECT id, agent_id, gpu_ids, state, coalesce(started_at, dispatched_at) AS started_at, finished_at "
        "FROM jobs WHERE id = $1 AND ($2::text IS NULL OR owner_id = $2)",
        job_id,
        owner_id,
    )


async def host_series(conn, agent_id: str, start: datetime, end: datetime, step_s: int) -> list[asyncpg.Record]:
    """Host CPU, memory and job count averaged per `step_s` bucket, from whichever resolutions cover the range."""
    return await conn.fetch(
        f"""
        SELECT date_bin(make_interval(secs => $4::int), at, {ORIGIN}) AS at, sum(samples)::int AS samples,
               {", ".join(f"{_weighted(c)} AS {c}" for c in HOST_COLUMNS)}
        FROM agent_metrics WHERE agent_id = $1 AND at >= $2 AND at < $3 GROUP BY 1 ORDER BY 1
        """,
        agent_id,
        start,
        end,
        step_s,
    )


async def gpu_series(
    conn, agent_id: str, start: datetime, end: datetime, step_s: int, gpu_ids: list[int] | None = None
) -> list[asyncpg.Record]:
    """Per-GPU readings averaged per `step_s` bucket; only `gpu_ids` when given."""
    return await conn.fetch(
        f"""
        SELECT gpu_index, date_bin(make_interval(secs => $4::int), at, {ORIGIN}) AS at,
               sum(samples)::int AS samples, {", ".join(f"{_weighted(c)} AS {c}" for c in GPU_COLUMNS)}
        FROM agent_gpu_metrics
        WHERE agent_id = $1 AND at >= $2 AND at < $3 AND ($5::int[] IS NULL OR gpu_index = ANY($5::int[]))
        GROUP BY 1, 2 ORDER BY 1, 2
        """,
        agent_id,
        start,
        end,
        step_s,
        gpu_ids,
    )


async def table_sizes(conn) -> dict[str, int]:
    """Bytes on disk of the history tables, indexes included (for the benchmark and operators)."""
    rows = await conn.fetch(
        "SELECT relname, pg_total_relation_size(oid) AS bytes FROM pg_class "
        "WHERE relname IN ('agent_metrics', 'agent_gpu_metrics')"
    )
    return {r["relname"]: r["bytes"] for r in rows}
