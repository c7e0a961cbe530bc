"""SQL of fine-tuning jobs: the `fine_tuning_jobs` rows beside the jobs they are OpenAI's face of."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from services.common import readmodels
from services.common.contracts import JobState

COLUMNS = (
    "f.id, f.job_id, f.owner_id, f.model, f.training_file, f.validation_file, f.suffix, f.seed, f.metadata, "
    "f.integrations, f.method, f.pause_requested, f.created_at, f.result_file, j.state, j.reason, j.message, "
    "j.progress, "
    "j.metrics, j.finished_at, j.output_dir, j.fetches, u.username, "
    f"({readmodels.model_of_job('j.id')}) AS model_name, "
    "(SELECT p.at + make_interval(secs => p.remaining_s) FROM job_progress p "
    " WHERE p.job_id = j.id ORDER BY p.step DESC LIMIT 1) AS estimated_finish, "
    "(SELECT max(p.tokens_seen) FROM job_progress p WHERE p.job_id = j.id) AS tokens_seen"
)
FROM = f"FROM fine_tuning_jobs f JOIN jobs j ON j.id = f.job_id {readmodels.owner_name_join('f.owner_id')}"


class FineTuningRow(msgspec.Struct, kw_only=True):
    """A fine-tuning job and what it shows of its platform job."""

    id: str
    job_id: str
    owner_id: str
    model: str
    training_file: str
    validation_file: str | None
    suffix: str | None
    seed: int
    metadata: dict[str, str] | None
    integrations: list[dict[str, Any]]
    method: dict[str, Any]
    pause_requested: bool
    created_at: datetime
    state: JobState
    reason: str | None
    message: str | None
    progress: dict[str, Any] | None
    metrics: dict[str, float] | None
    finished_at: datetime | None
    output_dir: str | None
    fetches: dict[str, Any] | None
    username: str | None
    model_name: str | None
    estimated_finish: datetime | None  # the newest progress point's time and remaining time
    result_file: str | None  # its results file (made once it succeeded), kept after the owner deletes the file
    tokens_seen: int | None  # the most tokens its progress counted


async def insert(conn, *, ftjob_id: str, job_id: str, owner_id: str, values: dict[str, Any]) -> None:
    """The fine-tuning job of `job_id` (in the transaction that stores the job)."""
    await conn.execute(
        "INSERT INTO fine_tuning_jobs (id, job_id, owner_id, model, training_file, validation_file, suffix, seed, "
        "metadata, integrations, method) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        ftjob_id,
        job_id,
        owner_id,
        values["model"],
        values["training_file"],
        values["validation_file"],
        values["suffix"],
        values["seed"],
        values["metadata"],
        values["integrations"],
        values["method"],
    )


async def one(conn, ftjob_id: str, owner_id: str | None) -> FineTuningRow | None:
    """The fine-tuning job, only when `owner_id` owns it (None: any owner, for admins)."""
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} {FROM} WHERE f.id = $1 AND ($2::text IS NULL OR f.owner_id = $2)", ftjob_id, owner_id
    )
    return None if row is None else FineTuningRow(**dict(row))


async def by_job(conn, job_id: str) -> FineTuningRow | None:
    """The fine-tuning job whose platform job is `job_id`, if it was created as one."""
    row = await conn.fetchrow(f"SELECT {COLUMNS} {FROM} WHERE f.job_id = $1", job_id)
    return None if row is None else FineTuningRow(**dict(row))


async def page(conn, owner_id: str, after: str | None, limit: int, metadata: dict[str, str]) -> list[FineTuningRow]:
    """The owner's fine-tuning jobs newest first, those created before `after` (an id of theirs) when given, whose
    metadata holds every pair of `metadata`; at most `limit`."""
    rows = await conn.fetch(
        f"""
        SELECT {COLUMNS} {FROM}
        WHERE f.owner_id = $1 AND ($4::jsonb = '{{}}'::jsonb OR f.metadata @> $4::jsonb)
          AND ($2::text IS NULL OR (f.created_at, f.id) <
               (SELECT created_at, id FROM fine_tuning_jobs WHERE id = $2 AND owner_id = $1))
        ORDER BY f.created_at DESC, f.id DESC LIMIT $3
        """,
        owner_id,
        after,
        limit,
        metadata,
    )
    return [FineTuningRow(**dict(row)) for row in rows]


async def set_pause(conn, ftjob_id: str, requested: bool) -> None:
    await conn.execute("UPDATE fine_tuning_jobs SET pause_requested = $2 WHERE id = $1", ftjob_id, requested)
