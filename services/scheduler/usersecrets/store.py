"""SQL of users' secrets (the scheduler alone writes `user_secrets`) and what a job may be given."""

from __future__ import annotations

import asyncpg


async def secrets_of(conn, user_id: str) -> list[asyncpg.Record]:
    """The names the user has set, with their times (never the ciphertext: nothing that lists needs it)."""
    return await conn.fetch(
        "SELECT name, created_at, updated_at FROM user_secrets WHERE user_id = $1 ORDER BY name", user_id
    )


async def sealed_of(conn, user_id: str, names: list[str]) -> list[asyncpg.Record]:
    """The stored ciphertexts of these of the user's secrets."""
    return await conn.fetch(
        "SELECT name, ciphertext, key_id FROM user_secrets WHERE user_id = $1 AND name = ANY($2::text[])",
        user_id,
        names,
    )


async def put_secret(conn, user_id: str, name: str, ciphertext: bytes, key_id: str) -> asyncpg.Record:
    """Set or replace one of the user's secrets; its times."""
    return await conn.fetchrow(
        """
        INSERT INTO user_secrets (user_id, name, ciphertext, key_id) VALUES ($1, $2, $3, $4)
        ON CONFLICT (user_id, name) DO UPDATE
            SET ciphertext = EXCLUDED.ciphertext, key_id = EXCLUDED.key_id, updated_at = now()
        RETURNING name, created_at, updated_at
        """,
        user_id,
        name,
        ciphertext,
        key_id,
    )


async def delete_secret(conn, user_id: str, name: str) -> bool:
    """Delete one of the user's secrets; whether there was one."""
    status = await conn.execute("DELETE FROM user_secrets WHERE user_id = $1 AND name = $2", user_id, name)
    return status.endswith(" 1")


async def job_for_secrets(conn, job_id: str) -> asyncpg.Record | None:
    """Who may ask for a job's secrets, and which: its owner, agent, attempt, state and secret_names."""
    return await conn.fetchrow(
        "SELECT owner_id, agent_id, attempt, state, secret_names FROM jobs WHERE id = $1", job_id
    )
