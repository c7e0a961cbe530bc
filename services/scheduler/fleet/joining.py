"""Joining: an admin's join token lets a GPU host obtain its agent's own NATS user and settings (docs/fleet.md).

A token is shown once and kept as a sha256 hash; it expires, counts its uses and can be revoked. A join gives the
agent a fresh NATS password, kept as a bcrypt hash (what nats-server's config accepts in its place); whoever
writes nats-server's config (the launcher, `llmct nats sync-users`) is nudged to render the users again.
Revoking an agent's credentials deletes its user: on reload nats-server closes its connection at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated

import asyncpg
import msgspec
from msgspec import Meta
from nats.aio.client import Client
from nats.errors import Error as NatsError

from services.common import nats_auth
from services.common.bus import urls_without_credentials
from services.common.contracts import Subjects
from services.common.errors import ApiError, not_found
from services.common.security import Principal, new_id

from ..settings import SchedulerSettings
from . import join_store as store

log = logging.getLogger(__name__)

TOKEN_PREFIX = "llmct_join_"
# Path words under /api/agents/ that an agent id may not take (its detail route would be shadowed).
RESERVED_IDS = {"join", "join-tokens", "credentials"}
SYNC_WAIT_S = 5.0  # how long a join waits for nats-server to have the new user before answering anyway


class JoinTokenCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    expires_in_hours: Annotated[int, Meta(ge=1, le=24 * 30)] = 24
    max_uses: Annotated[int, Meta(ge=1, le=1000)] = 1
    note: Annotated[str, Meta(max_length=200)] = ""


class JoinUse(msgspec.Struct, kw_only=True):
    agent_id: str
    hostname: str
    address: str
    at: datetime


class JoinToken(msgspec.Struct, kw_only=True):
    """A join token as admins see it: never the token itself, which is shown once."""

    id: str
    prefix: str
    note: str
    max_uses: int
    uses: int
    expires_at: datetime
    revoked_at: datetime | None
    created_at: datetime
    state: str  # active | expired | used_up | revoked
    joined: list[JoinUse] = []


class JoinTokenCreated(JoinToken, kw_only=True):
    token: str  # shown once


class JoinRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    token: Annotated[str, Meta(min_length=1, max_length=200)]
    hostname: Annotated[str, Meta(min_length=1, max_length=253)]
    agent_id: str | None = None


class AgentJoinSettings(msgspec.Struct, kw_only=True):
    """What a joined agent needs: its id, its own NATS user, where NATS is and how it should behave."""

    agent_id: str
    nats_urls: list[str]
    nats_user: str
    nats_password: str  # given once, kept only as a hash
    storage_mode: str
    heartbeat_s: float
    offline_after_s: float


class AgentCredentials(msgspec.Struct, kw_only=True):
    agent_id: str
    nats_user: str
    hostname: str
    token_id: str | None
    created_at: datetime


def hash_token(token: str) -> bytes:
    # 256 random bits: a fast hash is enough and the lookup stays an index probe.
    return hashlib.sha256(token.encode()).digest()


def token_state(row, now: datetime) -> str:
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] <= now:
        return "expired"
    return "used_up" if row["uses"] >= row["max_uses"] else "active"


def to_token(row, now: datetime, uses=()) -> JoinToken:
    fields = {f: row[f] for f in JoinToken.__struct_fields__ if f not in ("state", "joined")}
    joined = [JoinUse(**{f: u[f] for f in JoinUse.__struct_fields__}) for u in uses]
    return JoinToken(**fields, state=token_state(row, now), joined=joined)


async def create_token(pool: asyncpg.Pool, principal: Principal, data: JoinTokenCreate) -> JoinTokenCreated:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with pool.acquire() as conn:
        row = await store.insert_token(
            conn,
            token_id=new_id("jtk"),
            token_hash=hash_token(token),
            prefix=token[: len(TOKEN_PREFIX) + 6],
            note=data.note.strip(),
            created_by=principal.user_id,
            max_uses=data.max_uses,
            expires_at=datetime.now(UTC) + timedelta(hours=data.expires_in_hours),
        )
    shown = to_token(row, datetime.now(UTC))
    return JoinTokenCreated(**{f: getattr(shown, f) for f in JoinToken.__struct_fields__}, token=token)


async def list_tokens(pool: asyncpg.Pool) -> list[JoinToken]:
    async with pool.acquire() as conn:
        rows = await store.list_tokens(conn)
        uses = await store.uses_of(conn, [row["id"] for row in rows])
    by_token: dict[str, list] = {}
    for use in uses:
        by_token.setdefault(use["token_id"], []).append(use)
    now = datetime.now(UTC)
    return [to_token(row, now, by_token.get(row["id"], ())) for row in rows]


async def revoke_token(pool: asyncpg.Pool, token_id: str) -> JoinToken:
    """No further joins with the token; agents that joined with it keep their users."""
    async with pool.acquire() as conn:
        row = await store.revoke_token(conn, token_id)
    if row is None:
        raise not_found("join token")
    return to_token(row, datetime.now(UTC))


def refused(row, now: datetime) -> ApiError | None:
    """Why a known token cannot be used now, or None."""
    match token_state(row, now):
        case "revoked":
            return ApiError(403, "join_token_revoked", "this join token was revoked: ask an admin for a new one")
        case "expired":
            return ApiError(403, "join_token_expired", "this join token has expired: ask an admin for a new one")
        case "used_up":
            return ApiError(
                403, "join_token_used_up", "this join token has been used as often as allowed: ask for a new one"
            )
    return None


def chosen_agent_id(data: JoinRequest) -> str:
    """The id asked for, else the host name made a subject token; 422 for one NATS cannot carry."""
    wanted = data.agent_id if data.agent_id else re.sub(r"[^A-Za-z0-9_-]", "-", data.hostname)[:64]
    field = "agent_id" if data.agent_id else "hostname"
    try:
        agent_id = nats_auth.check_agent_id(wanted)
    except nats_auth.BadAgentId as exc:
        raise ApiError(422, "invalid_field", str(exc), field) from None
    if agent_id in RESERVED_IDS:
        raise ApiError(422, "invalid_field", f"agent id {agent_id!r} is reserved: choose another", field)
    return agent_id


async def throttle(conn, settings: SchedulerSettings, address: str) -> None:
    """429 while this client has failed too often within the window (bad, expired or used-up tokens)."""
    count, oldest = await store.recent_failures(conn, address, settings.join_window_s)
    if count >= settings.join_max_failures and oldest is not None:
        remaining = (oldest + timedelta(seconds=settings.join_window_s) - datetime.now(UTC)).total_seconds()
        wait = max(1, math.ceil(remaining))
        raise ApiError(
            429,
            "too_many_attempts",
            f"too many failed joins from this address: try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )


async def _failed(pool: asyncpg.Pool, address: str, error: ApiError) -> ApiError:
    async with pool.acquire() as conn:
        await store.record_failure(conn, address)
    return error


async def join(
    pool: asyncpg.Pool, nc: Client, settings: SchedulerSettings, data: JoinRequest, address: str
) -> AgentJoinSettings:
    """Spend one use of the token on a new agent's own NATS user; returns the agent's settings."""
    async with pool.acquire() as conn:
        await throttle(conn, settings, address)
        await store.forget_old_failures(conn, settings.join_window_s)
    agent_id = chosen_agent_id(data)
    async with pool.acquire() as conn, conn.transaction():
        row = await store.token_for_use(conn, hash_token(data.token))
        if row is None:
            raise await _failed(pool, address, ApiError(401, "join_token_invalid", "this join token is not valid"))
        if (why := refused(row, row["now"])) is not None:
            raise await _failed(pool, address, why)
        if await store.agent_is_taken(conn, agent_id, settings.offline_after_s):
            raise ApiError(
                409,
                "agent_exists",
                f"agent {agent_id!r} already has its NATS user or is online: choose another id "
                "(--agent-id), or revoke that agent's credentials first",
                "agent_id",
            )
        # Only for a good token: bcrypt takes a while, and nobody else may make the scheduler spend it.
        password, password_hash = await asyncio.to_thread(nats_auth.new_agent_password)
        user = nats_auth.agent_user(agent_id)
        await store.insert_credentials(
            conn,
            agent_id=agent_id,
            nats_user=user,
            password_hash=password_hash,
            token_id=row["id"],
            hostname=data.hostname,
        )
        await store.count_use(conn, row["id"], agent_id, data.hostname, address)
    await announce_users_changed(nc)
    log.info("agent %s joined from %s with join token %s", agent_id, address, row["id"])
    return AgentJoinSettings(
        agent_id=agent_id,
        nats_urls=public_nats_urls(settings),
        nats_user=user,
        nats_password=password,
        storage_mode=settings.storage_mode,
        heartbeat_s=settings.heartbeat_s,
        offline_after_s=settings.offline_after_s,
    )


def public_nats_urls(settings: SchedulerSettings) -> list[str]:
    """LLMCT_PUBLIC_NATS_URL, else NATS_URL; never with the services' credentials in it."""
    return urls_without_credentials(settings.public_nats_url or settings.nats_url)


async def list_credentials(pool: asyncpg.Pool) -> list[AgentCredentials]:
    async with pool.acquire() as conn:
        rows = await store.list_credentials(conn)
    return [AgentCredentials(**{f: row[f] for f in AgentCredentials.__struct_fields__}) for row in rows]


async def revoke_credentials(pool: asyncpg.Pool, nc: Client, agent_id: str) -> None:
    """Delete a joined agent's NATS user: once nats-server reloads, its connection is closed and it cannot log in."""
    async with pool.acquire() as conn:
        if not await store.delete_credentials(conn, agent_id):
            raise not_found("joined agent")
    await announce_users_changed(nc)
    log.info("agent %s: its NATS user was revoked", agent_id)


async def announce_users_changed(nc: Client) -> None:
    """Tell whoever writes nats-server's config to render the users again; wait (a little) for one to have done
    it, so a joining agent's first connect succeeds. None listening is no error: their periodic check catches up."""
    try:
        await nc.request(Subjects.AGENT_USERS_CHANGED, b"", timeout=SYNC_WAIT_S)
    except (TimeoutError, NatsError) as exc:
        log.warning("no NATS users sync answered (%s): the change is applied on its next periodic check", exc)
