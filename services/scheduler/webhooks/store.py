"""SQL of webhook endpoints and deliveries (the scheduler alone writes them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

ENDPOINT_COLUMNS = "id, owner_id, url, events, secret_salt, description, enabled, fleet, created_at, updated_at"
DELIVERY_COLUMNS = (
    "id, endpoint_id, event_type, payload, state, attempts, next_attempt_at, last_status_code, last_error, "
    "last_latency_ms, created_at, delivered_at"
)
EDITABLE = frozenset({"url", "events", "description", "enabled", "fleet", "secret_salt"})


async def insert_endpoint(conn, **row: Any) -> asyncpg.Record:
    names = list(row)
    marks = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    return await conn.fetchrow(
        f"INSERT INTO webhook_endpoints ({', '.join(names)}) VALUES ({marks}) RETURNING {ENDPOINT_COLUMNS}",
        *row.values(),
    )


async def count_of(conn, owner_id: str) -> int:
    return await conn.fetchval("SELECT count(*) FROM webhook_endpoints WHERE owner_id = $1", owner_id)


async def endpoint_of(conn, endpoint_id: str, owner_id: str) -> asyncpg.Record | None:
    """The endpoint when `owner_id` owns it (another's reads as missing)."""
    return await conn.fetchrow(
        f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND owner_id = $2", endpoint_id, owner_id
    )


async def endpoints_of(conn, owner_id: str, before: tuple[datetime, str] | None, limit: int) -> list[asyncpg.Record]:
    """The owner's endpoints, newest first, after the cursor."""
    at, key = before or (None, None)
    return await conn.fetch(
        f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE owner_id = $1 "
        "AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3)) ORDER BY created_at DESC, id DESC LIMIT $4",
        owner_id,
        at,
        key,
        limit,
    )


async def update_endpoint(conn, endpoint_id: str, owner_id: str, changes: dict[str, Any]) -> asyncpg.Record | None:
    """Change the given columns of the owner's endpoint; None when it is not theirs."""
    unknown = set(changes) - EDITABLE
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    sets = [f"{name} = ${i}" for i, name in enumerate(changes, start=3)]
    sets.append("updated_at = now()")
    return await conn.fetchrow(
        f"UPDATE webhook_endpoints SET {', '.join(sets)} WHERE id = $1 AND owner_id = $2 RETURNING {ENDPOINT_COLUMNS}",
        endpoint_id,
        owner_id,
        *changes.values(),
    )


async def delete_endpoint(conn, endpoint_id: str, owner_id: str) -> bool:
    """Delete the owner's endpoint and its deliveries; False when it is not theirs."""
    status = await conn.execute("DELETE FROM webhook_endpoints WHERE id = $1 AND owner_id = $2", endpoint_id, owner_id)
    return status != "DELETE 0"


async def deliveries_of(
    conn, endpoint_id: str, state: str | None, before: tuple[datetime, str] | None, limit: int
) -> list[asyncpg.Record]:
    """An endpoint's deliveries, newest first, after the cursor (of one state when given)."""
    at, key = before or (None, None)
    return await conn.fetch(
        f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = $1 "
        "AND ($2::text IS NULL OR state = $2) AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4)) "
        "ORDER BY created_at DESC, id DESC LIMIT $5",
        endpoint_id,
        state,
        at,
        key,
        limit,
    )


async def delivery_of(conn, endpoint_id: str, delivery_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1 AND endpoint_id = $2",
        delivery_id,
        endpoint_id,
    )


async def copy_delivery(conn, delivery: asyncpg.Record, new_id: str) -> asyncpg.Record:
    """The same event again, as a new message (its own webhook-id, attempts and log) due now."""
    return await conn.fetchrow(
        "INSERT INTO webhook_deliveries (id, endpoint_id, event_type, payload) VALUES ($1, $2, $3, $4) "
        f"RETURNING {DELIVERY_COLUMNS}",
        new_id,
        delivery["endpoint_id"],
        delivery["event_type"],
        delivery["payload"],
    )


async def claim_due(conn, limit: int, lease_s: float) -> list[asyncpg.Record]:
    """Take up to `limit` due deliveries of enabled endpoints (replicas skip each other's), counting the attempt and
    pushing their next try past the lease: one this process never finishes is tried again then (at least once)."""
    return await conn.fetch(
        "UPDATE webhook_deliveries d SET attempts = d.attempts + 1, "
        "next_attempt_at = now() + make_interval(secs => $2::float8) FROM webhook_endpoints e "
        "WHERE e.id = d.endpoint_id AND d.id IN ("
        "  SELECT w.id FROM webhook_deliveries w JOIN webhook_endpoints x ON x.id = w.endpoint_id "
        "  WHERE w.state = 'pending' AND w.next_attempt_at <= now() AND x.enabled "
        "  ORDER BY w.next_attempt_at LIMIT $1 FOR UPDATE OF w SKIP LOCKED) "
        "RETURNING d.id, d.payload, d.attempts, e.url, e.secret_salt",
        limit,
        lease_s,
    )


async def record_result(
    conn,
    delivery_id: str,
    attempt: int,
    *,
    delivered: bool,
    status_code: int | None,
    error: str | None,
    latency_ms: int,
    retry_in_s: float | None,
) -> None:
    """What this attempt did: delivered, due again in `retry_in_s`, or (None) failed for good. Only while the
    delivery is still this attempt's (a lease that ran out and was claimed again is not overwritten)."""
    state = "delivered" if delivered else ("pending" if retry_in_s is not None else "failed")
    await conn.execute(
        "UPDATE webhook_deliveries SET state = $3, last_status_code = $4, last_error = $5, last_latency_ms = $6, "
        "delivered_at = CASE WHEN $3 = 'delivered' THEN now() END, "
        "next_attempt_at = CASE WHEN $7::float8 IS NULL THEN next_attempt_at "
        "ELSE now() + make_interval(secs => $7::float8) END "
        "WHERE id = $1 AND attempts = $2 AND state = 'pending'",
        delivery_id,
        attempt,
        state,
        status_code,
        error,
        latency_ms,
        retry_in_s,
    )
