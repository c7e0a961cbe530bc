"""SQL of the registry: the only writer of models. Other services' tables are read through
services.common.readmodels only (the owner's name, jobs that use a model, what a job produced)."""

from __future__ import annotations

import asyncpg

from services.common.readmodels import owner_name_join

# m: the model, b: the model it derives from, u: its owner.
COLUMNS = """
    m.id, m.name, m.kind, m.source, m.owner_id, u.username AS owner, m.base_model_id, b.name AS base_model,
    m.path, m.hf_path, m.ms_path, m.visibility, m.size_bytes, m.parameter_count, m.template, m.job_id,
    m.datasets, m.details, m.remark, m.retired_at, m.created_at, m.updated_at
"""
FROM = f"models m LEFT JOIN models b ON b.id = m.base_model_id {owner_name_join('m.owner_id')}"
LIVE = "m.deleted_at IS NULL"
# Who sees a model: presets are everyone's; $viewer NULL means an admin, who sees all.
SEEN_BY = "({viewer}::text IS NULL OR m.source = 'preset' OR m.owner_id = {viewer})"
SORTS = frozenset({"created_at", "updated_at", "name", "size_bytes", "parameter_count"})
MAX_DEPTH = 64


async def by_name_for(conn, caller_id: str, name: str) -> asyncpg.Record | None:
    """The model `name` as the caller sees it: their own first, then a preset (retired ones included)."""
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM {FROM} WHERE m.name = $1 AND {LIVE} "
        "AND (m.source = 'preset' OR m.owner_id = $2) ORDER BY (m.source = 'preset') LIMIT 1",
        name,
        caller_id,
    )


async def get(conn, model_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {COLUMNS} FROM {FROM} WHERE m.id = $1 AND {LIVE}", model_id)


def _filters(
    viewer: str | None,
    kind: str | None,
    source: str | None,
    search: str | None,
    retired: bool | None,
    base_id: str | None,
    job_id: str | None = None,
    checkpoint_step: int | None = None,
    checkpoint: bool | None = None,
) -> tuple[str, list]:
    where = (
        f"{LIVE} AND {SEEN_BY.format(viewer='$1')} AND ($2::text IS NULL OR m.kind = $2) "
        "AND ($3::text IS NULL OR m.source = $3) "
        "AND ($4::text IS NULL OR m.name ILIKE $4 ESCAPE '\\' OR m.hf_path ILIKE $4 ESCAPE '\\' "
        "     OR m.ms_path ILIKE $4 ESCAPE '\\') "
        "AND ($5::boolean IS NULL OR (m.retired_at IS NOT NULL) = $5) "
        "AND ($6::text IS NULL OR m.base_model_id = $6) "
        "AND ($7::text IS NULL OR m.job_id = $7) AND ($8::integer IS NULL OR m.checkpoint_step = $8) "
        "AND ($9::boolean IS NULL OR (m.checkpoint_step IS NOT NULL) = $9)"
    )
    pattern = None
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
    return where, [viewer, kind, source, pattern, retired, base_id, job_id, checkpoint_step, checkpoint]


async def list_models(
    conn,
    *,
    viewer: str | None,
    kind: str | None,
    source: str | None,
    search: str | None,
    retired: bool | None,
    sort: str,
    descending: bool,
    limit: int,
    offset: int,
    base_id: str | None = None,
    job_id: str | None = None,
    checkpoint_step: int | None = None,
    checkpoint: bool | None = None,
) -> tuple[list[asyncpg.Record], int]:
    """One page of the models `viewer` sees (None: all), and how many there are in all; only those made directly
    from the model `base_id`, those job `job_id` made, its checkpoint at `checkpoint_step`, only (or no) checkpoints'
    models, when given."""
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}")
    where, values = _filters(viewer, kind, source, search, retired, base_id, job_id, checkpoint_step, checkpoint)
    direction = "DESC" if descending else "ASC"
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM {FROM} WHERE {where} "
        f"ORDER BY m.{sort} {direction} NULLS LAST, m.id {direction} LIMIT $10 OFFSET $11",
        *values,
        limit,
        offset,
    )
    total = await conn.fetchval(f"SELECT count(*) FROM models m WHERE {where}", *values)
    return rows, total


async def ancestors(conn, model_id: str) -> list[asyncpg.Record]:
    """What `model_id` derives from, nearest first, up to its preset."""
    return await conn.fetch(
        f"""
        WITH RECURSIVE up(id, depth) AS (
            SELECT base_model_id, 1 FROM models WHERE id = $1 AND base_model_id IS NOT NULL
            UNION ALL
            SELECT m.base_model_id, up.depth + 1 FROM up JOIN models m ON m.id = up.id
            WHERE m.base_model_id IS NOT NULL AND up.depth < {MAX_DEPTH}
        )
        SELECT {COLUMNS}, up.depth FROM up JOIN {FROM} ON m.id = up.id ORDER BY up.depth
        """,
        model_id,
    )


async def descendants(conn, model_id: str, viewer: str | None, limit: int) -> list[asyncpg.Record]:
    """What derives from `model_id` that `viewer` sees (None: all), by depth then age."""
    return await conn.fetch(
        f"""
        WITH RECURSIVE down(id, depth) AS (
            SELECT id, 1 FROM models WHERE base_model_id = $1 AND deleted_at IS NULL
            UNION ALL
            SELECT m.id, down.depth + 1 FROM down JOIN models m ON m.base_model_id = down.id
            WHERE m.deleted_at IS NULL AND down.depth < {MAX_DEPTH}
        )
        SELECT {COLUMNS}, down.depth FROM down JOIN {FROM} ON m.id = down.id
        WHERE {SEEN_BY.format(viewer="$2")}
        ORDER BY down.depth, m.created_at, m.id LIMIT $3
        """,
        model_id,
        viewer,
        limit,
    )


async def live_children(conn, model_id: str) -> int:
    return await conn.fetchval("SELECT count(*) FROM models WHERE base_model_id = $1 AND deleted_at IS NULL", model_id)


async def preset_named(conn, name: str, *, include_deleted: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id FROM models WHERE source = 'preset' AND name = $1 AND ($2 OR deleted_at IS NULL) LIMIT 1",
        name,
        include_deleted,
    )


async def insert_preset(
    conn,
    *,
    model_id: str,
    name: str,
    path: str | None,
    hf_path: str | None,
    ms_path: str | None,
    parameter_count: int | None,
    template: str,
    remark: str | None,
    details: dict,
) -> asyncpg.Record | None:
    """A new preset; None when a live preset already has the name."""
    return await conn.fetchrow(
        """
        INSERT INTO models (id, name, source, kind, visibility, path, hf_path, ms_path, parameter_count, template,
                            remark, details)
        VALUES ($1, $2, 'preset', 'base', 'public', $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (name) WHERE source = 'preset' AND deleted_at IS NULL DO NOTHING
        RETURNING id
        """,
        model_id,
        name,
        path,
        hf_path,
        ms_path,
        parameter_count,
        template,
        remark,
        details,
    )


async def update(conn, model_id: str, changes: dict) -> None:
    """Set the given columns of a live model."""
    sets, values = ["updated_at = now()"], [model_id]
    for column, value in changes.items():
        values.append(value)
        sets.append(f"{column} = ${len(values)}")
    await conn.execute(f"UPDATE models SET {', '.join(sets)} WHERE id = $1 AND deleted_at IS NULL", *values)


async def soft_delete(conn, model_id: str) -> None:
    # The row stays as a tombstone: its job id keeps a redelivered result from registering it again.
    await conn.execute("UPDATE models SET deleted_at = now(), updated_at = now() WHERE id = $1", model_id)


async def lock(conn, model_id: str) -> None:
    await conn.execute("SELECT 1 FROM models WHERE id = $1 FOR UPDATE", model_id)


# --- job outputs ------------------------------------------------------------------------------


async def model_of_job(conn, job_id: str) -> str | None:
    """The model a job registered from its output, deleted or not (its checkpoints' are not it)."""
    return await conn.fetchval("SELECT id FROM models WHERE job_id = $1 AND checkpoint_step IS NULL", job_id)


async def model_of_checkpoint(conn, job_id: str, step: int) -> str | None:
    """The live model a job's checkpoint at `step` was registered as."""
    return await conn.fetchval(
        "SELECT id FROM models WHERE job_id = $1 AND checkpoint_step = $2 AND deleted_at IS NULL", job_id, step
    )


async def find_parent(conn, owner_id: str, name: str | None, location: str | None) -> asyncpg.Record | None:
    """The model a job started from, as its owner saw it: matched on the name the job asked for and the
    location its YAML used (either alone when the other changed since, e.g. a rename)."""
    return await conn.fetchrow(
        f"""
        SELECT {COLUMNS} FROM {FROM}
        WHERE {LIVE} AND (m.source = 'preset' OR m.owner_id = $1)
          AND (m.name = $2 OR $3 IN (m.path, m.hf_path, m.ms_path))
        ORDER BY (m.name = $2 AND $3 IN (m.path, m.hf_path, m.ms_path)) DESC NULLS LAST,
                 ($3 IN (m.path, m.hf_path, m.ms_path)) DESC NULLS LAST, (m.source = 'preset')
        LIMIT 1
        """,
        owner_id,
        name,
        location,
    )


async def insert_output(
    conn,
    *,
    model_id: str,
    name: str,
    kind: str,
    source: str,
    owner_id: str,
    base_model_id: str,
    path: str,
    size_bytes: int | None,
    parameter_count: int | None,
    template: str,
    job_id: str,
    datasets: list[str],
    details: dict,
    checkpoint_step: int | None = None,
) -> str | None:
    """Register what a job produced (its checkpoint at `checkpoint_step`); None when that model or the name already
    exists."""
    return await conn.fetchval(
        """
        INSERT INTO models (id, name, kind, source, visibility, owner_id, base_model_id, path, size_bytes,
                            parameter_count, template, job_id, datasets, details, checkpoint_step)
        VALUES ($1, $2, $3, $4, 'private', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
        ON CONFLICT DO NOTHING RETURNING id
        """,
        model_id,
        name,
        kind,
        source,
        owner_id,
        base_model_id,
        path,
        size_bytes,
        parameter_count,
        template,
        job_id,
        datasets,
        details,
        checkpoint_step,
    )
