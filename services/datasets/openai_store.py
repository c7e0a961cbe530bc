"""SQL of OpenAI's files and uploads (the datasets service is their only writer): `openai_files` (a file's dataset
and what OpenAI's file object says), `openai_uploads` and `openai_upload_parts`."""

from __future__ import annotations

from datetime import datetime

import asyncpg

FILE_COLUMNS = """f.id, f.dataset_id, f.owner_id, f.filename, f.purpose, f.kind, f.bytes, f.created_at,
                  d.file_name, d.info_key"""
FILE_FROM = "openai_files f LEFT JOIN datasets d ON d.id = f.dataset_id"  # a results file has no dataset
UPLOAD_COLUMNS = "id, owner_id, filename, purpose, bytes, mime_type, status, folder, file_id, created_at, expires_at"


async def insert_file(
    conn, *, file_id: str, dataset_id: str, owner_id: str, filename: str, purpose: str, kind: str, size: int
) -> None:
    await conn.execute(
        """INSERT INTO openai_files (id, dataset_id, owner_id, filename, purpose, kind, bytes)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        file_id,
        dataset_id,
        owner_id,
        filename,
        purpose,
        kind,
        size,
    )


async def own_file(conn, file_id: str, owner_id: str) -> asyncpg.Record | None:
    """The caller's file, or None (another user's is no different from a missing one)."""
    return await conn.fetchrow(
        f"SELECT {FILE_COLUMNS} FROM {FILE_FROM} WHERE f.id = $1 AND f.owner_id = $2", file_id, owner_id
    )


async def held_content(conn, file_id: str, owner_id: str) -> bytes | None:
    """The bytes kept in the row of the caller's file (a results file's CSV); None for any other file."""
    return await conn.fetchval("SELECT content FROM openai_files WHERE id = $1 AND owner_id = $2", file_id, owner_id)


async def delete_held(conn, file_id: str, owner_id: str) -> None:
    """Delete a file that has no dataset behind it (a results file)."""
    await conn.execute(
        "DELETE FROM openai_files WHERE id = $1 AND owner_id = $2 AND dataset_id IS NULL", file_id, owner_id
    )


async def list_files(
    conn, owner_id: str, *, purpose: str | None, after: str | None, newest_first: bool, limit: int
) -> list[asyncpg.Record]:
    """The owner's files in creation order (or its reverse), those after the file `after` only."""
    sign, order = ("<", "DESC") if newest_first else (">", "ASC")
    args: list = [owner_id]
    where = "f.owner_id = $1"
    if purpose:
        args.append(purpose)
        where += f" AND f.purpose = ${len(args)}"
    if after:
        args.append(after)
        where += (
            f" AND (f.created_at, f.id) {sign} (SELECT a.created_at, a.id FROM openai_files a"
            f" WHERE a.id = ${len(args)} AND a.owner_id = $1)"
        )
    args.append(limit)
    return await conn.fetch(
        f"SELECT {FILE_COLUMNS} FROM {FILE_FROM} WHERE {where} "
        f"ORDER BY f.created_at {order}, f.id {order} LIMIT ${len(args)}",
        *args,
    )


async def file_exists(conn, file_id: str, owner_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM openai_files WHERE id = $1 AND owner_id = $2", file_id, owner_id))


# --- uploads -----------------------------------------------------------------------------------------------


async def insert_upload(
    conn,
    *,
    upload_id: str,
    owner_id: str,
    filename: str,
    purpose: str,
    size: int,
    mime_type: str,
    folder: str,
    expires_at: datetime,
) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO openai_uploads (id, owner_id, filename, purpose, bytes, mime_type, status, folder, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8) RETURNING {UPLOAD_COLUMNS}""",
        upload_id,
        owner_id,
        filename,
        purpose,
        size,
        mime_type,
        folder,
        expires_at,
    )


async def own_upload(conn, upload_id: str, owner_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {UPLOAD_COLUMNS} FROM openai_uploads WHERE id = $1 AND owner_id = $2{' FOR UPDATE' if lock else ''}",
        upload_id,
        owner_id,
    )


async def set_upload_status(conn, upload_id: str, status: str, file_id: str | None = None) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""UPDATE openai_uploads SET status = $2, file_id = coalesce($3, file_id) WHERE id = $1
            RETURNING {UPLOAD_COLUMNS}""",
        upload_id,
        status,
        file_id,
    )


async def expired_uploads(conn, now: datetime) -> list[asyncpg.Record]:
    """Pending uploads past their expiry, marked expired (their folders are the caller's to remove)."""
    return await conn.fetch(
        f"""UPDATE openai_uploads SET status = 'expired' WHERE status = 'pending' AND expires_at <= $1
            RETURNING {UPLOAD_COLUMNS}""",
        now,
    )


async def insert_part(conn, part_id: str, upload_id: str, size: int) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO openai_upload_parts (id, upload_id, bytes) VALUES ($1, $2, $3) RETURNING id, created_at",
        part_id,
        upload_id,
        size,
    )


async def parts_of(conn, upload_id: str) -> dict[str, int]:
    """Part id -> bytes of an upload's parts."""
    rows = await conn.fetch("SELECT id, bytes FROM openai_upload_parts WHERE upload_id = $1", upload_id)
    return {row["id"]: row["bytes"] for row in rows}


async def received_bytes(conn, upload_id: str) -> int:
    return await conn.fetchval(
        "SELECT coalesce(sum(bytes), 0) FROM openai_upload_parts WHERE upload_id = $1", upload_id
    )


async def pending_bytes(conn, owner_id: str) -> int:
    """What the owner's pending uploads declared: room their parts may take before they count as datasets."""
    return await conn.fetchval(
        "SELECT coalesce(sum(bytes), 0) FROM openai_uploads WHERE owner_id = $1 AND status = 'pending' "
        "AND expires_at > now()",
        owner_id,
    )
