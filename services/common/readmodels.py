"""Read-only views of another service's tables: every one a service keeps, in one place.

A service owns its tables and is their only writer (docs/architecture.md, "Who owns what"). Decisions that
belong to an owner are asked of it over NATS (services.common.requests); what stays here are plain reads
that would cost a round trip for nothing, each listed in docs/architecture.md with its reader. They read
only columns the owner keeps for others (`jobs.dataset_keys`, `jobs.model_name`, `jobs.output`,
`jobs.fetches`), never the scheduler's frozen config. The guard's reads of auth's `api_keys` and
`revoked_sessions` are in services.common.security.
"""

from __future__ import annotations

import msgspec

from .contracts import ACTIVE_JOB_STATES, JobOutput

_ACTIVE = list(ACTIVE_JOB_STATES)


def owner_name_join(owner_column: str) -> str:
    """A LEFT JOIN adding `u.username` for `owner_column`: auth's users, read for an owner's name only."""
    return f"LEFT JOIN users u ON u.id = {owner_column}"


def model_of_job(job_column: str) -> str:
    """A scalar subquery: the name of the model the registry registered from `job_column`'s output (the scheduler:
    a fine-tuning job names it), NULL before it is registered and once it is deleted; its checkpoints' are not it."""
    return (
        f"SELECT m.name FROM models m WHERE m.job_id = {job_column} AND m.checkpoint_step IS NULL "
        "AND m.deleted_at IS NULL LIMIT 1"
    )


def user_known(user_column: str) -> str:
    """A condition true when auth knows `user_column`'s user (the scheduler: usage is kept for real accounts only)."""
    return f"EXISTS (SELECT 1 FROM users WHERE id = {user_column})"


async def users_exist(conn, user_id: str) -> bool:
    """Whether auth knows the user (the scheduler: limits are set for real accounts only)."""
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)", user_id)


async def job_owner(conn, job_id: str) -> str | None:
    """The owner of a job (the gateway: who may watch its log)."""
    return await conn.fetchval("SELECT owner_id FROM jobs WHERE id = $1", job_id)


async def active_jobs_using_dataset(conn, info_key: str, limit: int = 20) -> list[str]:
    """Unfinished jobs that read the dataset (the datasets service: no rename or delete under a job)."""
    rows = await conn.fetch(
        "SELECT id FROM jobs WHERE state = ANY($2::text[]) AND $1 = ANY(dataset_keys) ORDER BY created_at LIMIT $3",
        info_key,
        _ACTIVE,
        limit,
    )
    return [row["id"] for row in rows]


async def active_jobs_fetching(conn, bucket: str, name: str) -> bool:
    """Whether an unfinished job brings that object from the store (the datasets service: a deleted dataset's
    object stays while one does)."""
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = ANY($2::text[]) AND fetches->'inputs' @> $1::jsonb)",
        [{"bucket": bucket, "name": name}],
        _ACTIVE,
    )


async def active_jobs_using_model(conn, name: str, owner_id: str | None) -> int:
    """How many unfinished jobs name the model, any owner's when `owner_id` is None (the registry: no delete
    under a job)."""
    return await conn.fetchval(
        "SELECT count(*) FROM jobs WHERE state = ANY($3::text[]) AND model_name = $1 "
        "AND ($2::text IS NULL OR owner_id = $2)",
        name,
        owner_id,
        _ACTIVE,
    )


class JobOutputView(msgspec.Struct, frozen=True, kw_only=True):
    """What the registry needs of a job to register what it produced."""

    id: str
    kind: str
    state: str
    owner_id: str
    output: JobOutput | None


async def job_output(conn, job_id: str) -> JobOutputView | None:
    """A job's state and the output it leaves (None for kinds that leave none)."""
    row = await conn.fetchrow(
        "SELECT id, kind, state, owner_id, output::text AS output FROM jobs WHERE id = $1", job_id
    )
    if row is None:
        return None
    output = msgspec.json.decode(row["output"], type=JobOutput) if row["output"] else None
    return JobOutputView(id=row["id"], kind=row["kind"], state=row["state"], owner_id=row["owner_id"], output=output)


async def kept_checkpoints(conn, job_id: str) -> list[int]:
    """The steps of the checkpoints a job saved and its trainer has not removed since, oldest first (the registry:
    which of them may be registered as models)."""
    rows = await conn.fetch("SELECT step FROM job_checkpoints WHERE job_id = $1 ORDER BY step", job_id)
    return [row["step"] for row in rows]


async def succeeded_outputs_unregistered(conn, limit: int) -> list[str]:
    """Succeeded jobs that left an output the registry has no model for (their result was missed), oldest first."""
    rows = await conn.fetch(
        "SELECT j.id FROM jobs j WHERE j.state = 'succeeded' AND j.output IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM models m WHERE m.job_id = j.id AND m.checkpoint_step IS NULL) "
        "ORDER BY j.finished_at LIMIT $1",
        limit,
    )
    return [row["id"] for row in rows]


async def joined_agent_users(conn) -> dict[str, str]:
    """Agents that joined with a token, id -> the bcrypt hash of their NATS password (whoever writes the
    nats-server config: `llmct up`'s launcher, `llmct nats sync-users`)."""
    rows = await conn.fetch("SELECT agent_id, password_hash FROM agent_credentials ORDER BY agent_id")
    return {row["agent_id"]: row["password_hash"] for row in rows}
