"""SQL of the auth service: the only writer of users, invites, API keys and sessions."""

from __future__ import annotations

from datetime import datetime

import asyncpg

USER_COLUMNS = "id, username, role, disabled, session_generation, created_at"


async def insert_user(conn, *, user_id: str, username: str, password_hash: str, role: str) -> asyncpg.Record:
    return await conn.fetchrow(
        f"INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, $3, $4) RETURNING {USER_COLUMNS}",
        user_id,
        username,
        password_hash,
        role,
    )


async def user_by_name(conn, username: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = $1", username)


async def user_by_id(conn, user_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", user_id)


async def list_users(conn, *, after: str | None, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {USER_COLUMNS} FROM users WHERE ($1::text IS NULL OR username > $1) ORDER BY username LIMIT $2",
        after,
        limit,
    )


# An admin-made invite code that still has a seat: not revoked, spent or expired.
_INVITE_USABLE = "revoked_at IS NULL AND uses < max_uses AND (expires_at IS NULL OR expires_at > now())"


async def invite_usable(conn, code: str) -> bool:
    """Whether an admin-made invite code could be claimed now (a cheap check; claim_invite decides)."""
    return await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM invite_codes WHERE code = $1 AND {_INVITE_USABLE})", code)


async def claim_invite(conn, code: str) -> bool:
    """Use one seat of an admin-made invite code; False when it is unknown, spent, expired or revoked."""
    row = await conn.fetchrow(
        f"UPDATE invite_codes SET uses = uses + 1 WHERE code = $1 AND {_INVITE_USABLE} RETURNING code", code
    )
    return row is not None


INVITE_COLUMNS = "code, created_by, max_uses, uses, expires_at, revoked_at, created_at"


async def insert_invite(conn, *, code: str, created_by: str, max_uses: int, expires_at: datetime | None):
    return await conn.fetchrow(
        f"INSERT INTO invite_codes (code, created_by, max_uses, expires_at) VALUES ($1, $2, $3, $4) "
        f"RETURNING {INVITE_COLUMNS}",
        code,
        created_by,
        max_uses,
        expires_at,
    )


async def list_invites(conn) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {INVITE_COLUMNS} FROM invite_codes ORDER BY created_at DESC")


async def revoke_invite(conn, code: str) -> bool:
    row = await conn.fetchrow(
        "UPDATE invite_codes SET revoked_at = coalesce(revoked_at, now()) WHERE code = $1 RETURNING code", code
    )
    return row is not None


KEY_COLUMNS = "id, name, prefix, created_at, last_used_at, revoked_at, scope, expires_at"


async def insert_api_key(
    conn, *, key_id: str, user_id: str, name: str, prefix: str, key_hash: bytes, scope: str, expires_at
):
    return await conn.fetchrow(
        f"INSERT INTO api_keys (id, user_id, name, prefix, key_hash, scope, expires_at) "
        f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {KEY_COLUMNS}",
        key_id,
        user_id,
        name,
        prefix,
        key_hash,
        scope,
        expires_at,
    )


async def list_api_keys(conn, user_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at",
        user_id,
    )


async def revoke_api_key(conn, *, key_id: str, user_id: str) -> bool:
    row = await conn.fetchrow(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING id",
        key_id,
        user_id,
    )
    return row is not None


async def update_user(conn, user_id: str, *, disabled: bool | None, role: str | None) -> asyncpg.Record | None:
    """Set what is given; a change of either raises the session generation (its tokens end). None: no such user."""
    return await conn.fetchrow(
        f"""
        UPDATE users SET
            disabled = coalesce($2, disabled),
            role = coalesce($3, role),
            session_generation = session_generation
                + CASE WHEN disabled IS DISTINCT FROM coalesce($2, disabled)
                         OR role IS DISTINCT FROM coalesce($3, role) THEN 1 ELSE 0 END
        WHERE id = $1 RETURNING {USER_COLUMNS}
        """,
        user_id,
        disabled,
        role,
    )


async def end_sessions(conn, user_id: str, *, password_hash: str | None = None) -> asyncpg.Record | None:
    """Raise the user's session generation (and set a new password hash if given); None: no such user."""
    return await conn.fetchrow(
        f"UPDATE users SET session_generation = session_generation + 1, password_hash = coalesce($2, password_hash) "
        f"WHERE id = $1 RETURNING {USER_COLUMNS}",
        user_id,
        password_hash,
    )


async def revoke_api_keys_of(conn, user_id: str) -> int:
    """Revoke every API key of a user; returns how many were live."""
    result = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL", user_id
    )
    return int(result.split()[-1])


async def insert_revoked_session(conn, *, session_id: str, user_id: str, expires_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO revoked_sessions (session_id, user_id, expires_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (session_id) DO NOTHING",
        session_id,
        user_id,
        expires_at,
    )


async def recent_failures(conn, key: str, window_s: int) -> tuple[int, datetime | None]:
    """Failed logins under `key` within the window, and the oldest of them."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, min(at) AS oldest FROM login_failures "
        "WHERE key = $1 AND at > now() - make_interval(secs => $2)",
        key,
        float(window_s),
    )
    return row["n"], row["oldest"]


async def failures_before(conn, key: str, window_s: int, attempt: list[int]) -> tuple[int, float]:
    """Failed logins under `key` within the window other than `attempt`'s, and seconds since the latest of them."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, coalesce(extract(epoch FROM now() - max(at)), 0)::float8 AS age FROM login_failures "
        "WHERE key = $1 AND at > now() - make_interval(secs => $2) AND NOT id = ANY($3::bigint[])",
        key,
        float(window_s),
        attempt,
    )
    return row["n"], row["age"]


async def record_failures(conn, keys: list[str]) -> list[int]:
    """Count one failed login under each key; returns the rows' ids so the caller can take them back."""
    rows = await conn.fetch("INSERT INTO login_failures (key) SELECT unnest($1::text[]) RETURNING id", keys)
    return [row["id"] for row in rows]


async def touch_failures(conn, ids: list[int]) -> None:
    await conn.execute("UPDATE login_failures SET at = now() WHERE id = ANY($1::bigint[])", ids)


async def forget_failures(conn, ids: list[int]) -> None:
    await conn.execute("DELETE FROM login_failures WHERE id = ANY($1::bigint[])", ids)


async def clear_failures(conn, key: str) -> None:
    await conn.execute("DELETE FROM login_failures WHERE key = $1", key)


async def prune(conn, window_s: int) -> None:
    """Forget login failures and revoked sessions that no longer matter."""
    await conn.execute("DELETE FROM login_failures WHERE at < now() - make_interval(secs => $1)", float(window_s))
    await conn.execute("DELETE FROM revoked_sessions WHERE expires_at < now()")
