"""SQL of joining: join tokens (kept as hashes), their uses, joined agents' NATS users (bcrypt hashes) and the
failed join attempts the throttle counts."""

from __future__ import annotations

from datetime import datetime

TOKEN_COLUMNS = "id, prefix, note, max_uses, uses, expires_at, revoked_at, created_at"


async def insert_token(
    conn, *, token_id: str, token_hash: bytes, prefix: str, note: str, created_by: str, max_uses: int, expires_at
):
    return await conn.fetchrow(
        "INSERT INTO join_tokens (id, token_hash, prefix, note, created_by, max_uses, expires_at) "
        f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {TOKEN_COLUMNS}",
        token_id,
        token_hash,
        prefix,
        note,
        created_by,
        max_uses,
        expires_at,
    )


async def list_tokens(conn, limit: int = 200):
    return await conn.fetch(f"SELECT {TOKEN_COLUMNS} FROM join_tokens ORDER BY created_at DESC LIMIT $1", limit)


async def uses_of(conn, token_ids: list[str]):
    return await conn.fetch(
        "SELECT token_id, agent_id, hostname, address, at FROM join_token_uses WHERE token_id = ANY($1::text[]) "
        "ORDER BY at",
        token_ids,
    )


async def revoke_token(conn, token_id: str):
    """Mark a token revoked (the first time counts); None when there is no such token."""
    return await conn.fetchrow(
        f"UPDATE join_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING {TOKEN_COLUMNS}",
        token_id,
    )


async def token_for_use(conn, token_hash: bytes):
    """The token with this hash, locked until the transaction ends (two joins cannot both take its last use)."""
    return await conn.fetchrow(
        f"SELECT {TOKEN_COLUMNS}, now() AS now FROM join_tokens WHERE token_hash = $1 FOR UPDATE", token_hash
    )


async def count_use(conn, token_id: str, agent_id: str, hostname: str, address: str) -> None:
    await conn.execute("UPDATE join_tokens SET uses = uses + 1 WHERE id = $1", token_id)
    await conn.execute(
        "INSERT INTO join_token_uses (token_id, agent_id, hostname, address) VALUES ($1, $2, $3, $4)",
        token_id,
        agent_id,
        hostname,
        address,
    )


async def agent_is_taken(conn, agent_id: str, offline_after_s: float) -> bool:
    """Whether the id has a joined NATS user already, or an agent by that name heartbeats now."""
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM agent_credentials WHERE agent_id = $1) OR EXISTS (SELECT 1 FROM agents "
        "WHERE id = $1 AND offline_since IS NULL AND last_seen >= now() - make_interval(secs => $2::float8))",
        agent_id,
        offline_after_s,
    )


async def insert_credentials(
    conn, *, agent_id: str, nats_user: str, password_hash: str, token_id: str, hostname: str
) -> None:
    await conn.execute(
        "INSERT INTO agent_credentials (agent_id, nats_user, password_hash, token_id, hostname) "
        "VALUES ($1, $2, $3, $4, $5)",
        agent_id,
        nats_user,
        password_hash,
        token_id,
        hostname,
    )


async def list_credentials(conn):
    return await conn.fetch(
        "SELECT agent_id, nats_user, hostname, token_id, created_at FROM agent_credentials ORDER BY agent_id"
    )


async def delete_credentials(conn, agent_id: str) -> bool:
    return await conn.fetchval("DELETE FROM agent_credentials WHERE agent_id = $1 RETURNING true", agent_id) or False


async def record_failure(conn, address: str) -> None:
    await conn.execute("INSERT INTO join_failures (address) VALUES ($1)", address)


async def recent_failures(conn, address: str, window_s: float) -> tuple[int, datetime | None]:
    """Failed joins of one client within the window, and when the oldest of them was."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, min(at) AS oldest FROM join_failures "
        "WHERE address = $1 AND at >= now() - make_interval(secs => $2::float8)",
        address,
        window_s,
    )
    return row["n"], row["oldest"]


async def forget_old_failures(conn, window_s: float) -> None:
    await conn.execute("DELETE FROM join_failures WHERE at < now() - make_interval(secs => $1::float8)", window_s)
