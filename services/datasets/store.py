"""SQL of the datasets service: the only writer of `datasets` (and so of dataset_info.json) and `dataset_quotas`."""

from __future__ import annotations

import asyncpg

from services.common.readmodels import owner_name_join

COLUMNS = """d.id, d.name, d.info_key, d.visibility, d.owner_id, u.username AS owner, d.source, d.format,
             d.columns, d.tags, d.file_name, d.files, d.managed, d.rows, d.size_bytes, d.checksum, d.signature,
             d.remark, d.info, d.created_at, d.updated_at"""
FROM = f"datasets d {owner_name_join('d.owner_id')}"
# Who sees what: everyone the public ones, a caller also their own.
VISIBLE = "(d.visibility = 'public' OR d.owner_id = $1)"
INFO_LOCK = 7_101  # advisory lock: one writer of dataset_info.json at a time, across replicas and the CLI
QUOTA_LOCK = 7_102  # advisory lock class (with the owner's hash): one quota check and insert per owner at a time


async def visible_dataset(conn, dataset_id: str, caller_id: str | None, *, lock: bool = False):
    """A dataset the caller may see (public, or theirs), or None."""
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM {FROM} WHERE d.id = $2 AND {VISIBLE}{' FOR UPDATE OF d' if lock else ''}",
        caller_id,
        dataset_id,
    )


async def list_visible(
    conn,
    *,
    caller_id: str | None,
    search: str | None,
    fmt: str | None,
    visibility: str | None,
    after: tuple[str, str] | None,
    limit: int,
) -> list[asyncpg.Record]:
    where, args = _filters(caller_id, search, fmt, visibility)
    if after:
        args += [after[0], after[1]]
        where += f" AND (lower(d.name), d.id) > (${len(args) - 1}, ${len(args)})"
    args.append(limit)
    return await conn.fetch(
        f"SELECT {COLUMNS} FROM {FROM} WHERE {where} ORDER BY lower(d.name), d.id LIMIT ${len(args)}", *args
    )


async def count_visible(
    conn, *, caller_id: str | None, search: str | None, fmt: str | None, visibility: str | None
) -> int:
    where, args = _filters(caller_id, search, fmt, visibility)
    return await conn.fetchval(f"SELECT count(*) FROM datasets d WHERE {where}", *args)


def _filters(caller_id, search, fmt, visibility) -> tuple[str, list]:
    where, args = [VISIBLE], [caller_id]
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        args.append(f"%{escaped}%")
        where.append(f"d.name ILIKE ${len(args)}")
    if fmt:
        args.append(fmt)
        where.append(f"d.format = ${len(args)}")
    if visibility:
        args.append(visibility)
        where.append(f"d.visibility = ${len(args)}")
    return " AND ".join(where), args


async def name_taken(conn, *, name: str, visibility: str, owner_id: str | None) -> bool:
    """A public name is unique among public datasets; a private one per owner, and never a public name."""
    if visibility == "public":
        return await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM datasets WHERE visibility = 'public' AND name = $1)", name
        )
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM datasets WHERE name = $1 AND (visibility = 'public' OR owner_id = $2))",
        name,
        owner_id,
    )


async def insert_dataset(conn, **row) -> None:
    names = list(row)
    placeholders = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    await conn.execute(f"INSERT INTO datasets ({', '.join(names)}) VALUES ({placeholders})", *row.values())


async def update_dataset(conn, dataset_id: str, **changes) -> None:
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(changes, start=2))
    await conn.execute(f"UPDATE datasets SET {sets}, updated_at = now() WHERE id = $1", dataset_id, *changes.values())


async def delete_dataset(conn, dataset_id: str) -> None:
    await conn.execute("DELETE FROM datasets WHERE id = $1", dataset_id)


async def file_in_use(conn, sha256: str) -> bool:
    """Whether any dataset (any owner's, public ones too) has a file of those bytes."""
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM datasets WHERE files @> $1::jsonb)", [{"sha256": sha256}])


async def usable_keys(conn, owner_id: str, names: list[str]) -> list[asyncpg.Record]:
    """For each requested name the owner may use: its dataset_info key and entry, format and columns (theirs first)."""
    return await conn.fetch(
        """
        SELECT DISTINCT ON (name) name, info_key, format, columns::text AS columns, info::text AS info
        FROM datasets WHERE name = ANY($1::text[]) AND (visibility = 'public' OR owner_id = $2)
        ORDER BY name, (visibility = 'private') DESC
        """,
        names,
        owner_id,
    )


# --- dataset_info.json and the public list: these also run on plain connections (the CLI), so JSON
# travels as text here, whatever codec the connection has.


async def info_entries(conn) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT info_key, info::text AS info FROM datasets ORDER BY info_key")


async def lock_info(conn) -> None:
    """Serialise writers of dataset_info.json until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", INFO_LOCK)


async def public_file_rows(conn) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, name, info_key, source, signature, info::text AS info FROM datasets WHERE visibility = 'public'"
    )


async def upsert_public_file(
    conn,
    *,
    dataset_id: str,
    name: str,
    fmt: str,
    columns: str,
    tags: str,
    file_name: str | None,
    files: str,
    rows: int | None,
    size_bytes: int | None,
    checksum: str | None,
    signature: str | None,
    info: str,
) -> None:
    await conn.execute(
        """
        INSERT INTO datasets (id, name, info_key, visibility, source, format, columns, tags, file_name, files,
                              rows, size_bytes, checksum, signature, info)
        VALUES ($1, $2, $2, 'public', 'public_file', $3, $4::text::jsonb, $5::text::jsonb, $6, $7::text::jsonb,
                $8, $9, $10, $11, $12::text::jsonb)
        ON CONFLICT (name) WHERE visibility = 'public' DO UPDATE SET
            format = $3, columns = $4::text::jsonb, tags = $5::text::jsonb, file_name = $6, files = $7::text::jsonb,
            rows = $8, size_bytes = $9, checksum = $10, signature = $11, info = $12::text::jsonb, updated_at = now()
        WHERE datasets.source = 'public_file'
        """,
        dataset_id,
        name,
        fmt,
        columns,
        tags,
        file_name,
        files,
        rows,
        size_bytes,
        checksum,
        signature,
        info,
    )


# --- quotas: what an owner's uploads take, and what an admin allowed them


async def lock_owner_quota(conn, owner_id: str) -> None:
    """Serialise the quota check and insert of one owner's uploads until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", QUOTA_LOCK, owner_id)


async def stored_bytes(conn, owner_id: str) -> int:
    """What the owner's uploaded datasets take (files the platform keeps; registered ones are not theirs)."""
    return await conn.fetchval(
        "SELECT coalesce(sum(size_bytes), 0)::bigint FROM datasets WHERE owner_id = $1 AND managed", owner_id
    )


async def custom_quota(conn, owner_id: str) -> int | None:
    """The quota an admin set for the owner, or None for the platform's default."""
    return await conn.fetchval("SELECT max_bytes FROM dataset_quotas WHERE user_id = $1", owner_id)


async def set_custom_quota(conn, user_id: str, max_bytes: int | None, admin_id: str) -> None:
    await conn.execute(
        "INSERT INTO dataset_quotas (user_id, max_bytes, updated_by) VALUES ($1, $2, $3) ON CONFLICT (user_id) "
        "DO UPDATE SET max_bytes = $2, updated_by = $3, updated_at = now()",
        user_id,
        max_bytes,
        admin_id,
    )


async def is_openai_file(conn, dataset_id: str) -> bool:
    """Whether the dataset is an OpenAI file's (its name is the file id: a job names it by that)."""
    return bool(await conn.fetchval("SELECT 1 FROM openai_files WHERE dataset_id = $1", dataset_id))
