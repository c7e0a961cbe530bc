"""Logic of the auth service: accounts, logins, sessions, API keys and invites."""

from __future__ import annotations

import asyncio
import hmac
import secrets
from datetime import UTC, datetime, timedelta

import asyncpg
from nats.aio.client import Client

from services.common import contracts
from services.common.errors import ApiError, not_found
from services.common.security import (
    DUMMY_PASSWORD_HASH,
    Principal,
    RevokedSessions,
    hash_password,
    issue_token,
    new_api_key,
    new_id,
    verify_password,
)

from . import store, throttle
from .schemas import ApiKey, ApiKeyCreate, ApiKeyCreated, Invite, InviteCreate, RegisterRequest, TokenResponse, User, to
from .settings import AuthSettings

COMMON_PASSWORDS = frozenset(
    {
        "password12",
        "password123",
        "1234567890",
        "qwertyuiop",
        "letmein123",
        "iloveyou12",
        "admin12345",
        "welcome123",
        "passw0rd12",
    }
)


def check_password_strength(username: str, password: str) -> None:
    """Refuse passwords that are easy to guess, naming the field."""
    problem = None
    if len(password) < 10:
        problem = "must be at least 10 characters"
    elif len(set(password)) < 5:
        problem = "must use at least 5 different characters"
    elif password.lower() in COMMON_PASSWORDS or username.lower() in password.lower():
        problem = "is too easy to guess (common, or contains the username)"
    if problem:
        raise ApiError(422, "weak_password", f"password {problem}", "password")


async def hash_in_thread(password: str) -> str:
    # Argon2 is deliberately slow: keep it off the event loop.
    return await asyncio.to_thread(hash_password, password)


async def create_user(pool: asyncpg.Pool, *, username: str, password: str, role: str) -> User:
    """Store a new account; 409 when the name is taken."""
    check_password_strength(username, password)
    password_hash = await hash_in_thread(password)
    try:
        row = await store.insert_user(
            pool, user_id=new_id("usr"), username=username, password_hash=password_hash, role=role
        )
    except asyncpg.UniqueViolationError as exc:
        raise ApiError(409, "username_taken", f"username {username!r} is taken", "username") from exc
    return to(User, row)


def _bad_invite() -> ApiError:
    return ApiError(403, "invalid_invite_code", "the invite code is missing, wrong, spent or expired", "invite_code")


def _is_standing_invite(settings: AuthSettings, code: str) -> bool:
    # Compare bytes: compare_digest raises on non-ASCII str, which turned a stray character into a 500.
    return bool(settings.invite_code) and hmac.compare_digest(code.encode(), settings.invite_code.encode())


async def register(pool: asyncpg.Pool, settings: AuthSettings, data: RegisterRequest, address: str) -> User:
    """Open an account with the standing invite code or an admin-made one; a client may try only so often."""
    await throttle.count_registration(pool, settings, address)
    check_password_strength(data.username, data.password)
    standing = _is_standing_invite(settings, data.invite_code)
    # Refuse a wrong code before paying for an Argon2 hash, so anonymous callers cannot make us burn CPU and memory.
    if not standing and not (data.invite_code and await store.invite_usable(pool, data.invite_code)):
        raise _bad_invite()
    password_hash = await hash_in_thread(data.password)
    async with pool.acquire() as conn, conn.transaction():
        # Claimed in the insert's transaction, so a taken username gives the seat back.
        if not standing and not await store.claim_invite(conn, data.invite_code):
            raise _bad_invite()
        try:
            row = await store.insert_user(
                conn, user_id=new_id("usr"), username=data.username, password_hash=password_hash, role="user"
            )
        except asyncpg.UniqueViolationError as exc:
            raise ApiError(409, "username_taken", f"username {data.username!r} is taken", "username") from exc
    return to(User, row)


async def ensure_admin(pool: asyncpg.Pool, settings: AuthSettings) -> None:
    """Create the first admin from the environment if it does not exist yet."""
    if not (settings.admin_username and settings.admin_password):
        return
    if await store.user_by_name(pool, settings.admin_username) is None:
        try:
            await create_user(pool, username=settings.admin_username, password=settings.admin_password, role="admin")
        except ApiError as exc:
            if exc.code != "username_taken":  # another replica made it first
                raise


async def login(
    pool: asyncpg.Pool, settings: AuthSettings, *, username: str, password: str, address: str
) -> TokenResponse:
    """Check a password, slowed down per (account, client) and per client; returns a token."""
    attempt = await throttle.start_login(pool, settings, username, address)
    user = await store.user_by_name(pool, username)
    ok = await asyncio.to_thread(verify_password, user["password_hash"] if user else DUMMY_PASSWORD_HASH, password)
    if not ok or user is None or user["disabled"]:
        await throttle.fail_login(pool, attempt)
        raise ApiError(401, "invalid_credentials", "wrong username or password")
    await throttle.finish_login(pool, attempt, username, address)
    token, _, _ = issue_token(
        settings.secret_key,
        user_id=user["id"],
        username=user["username"],
        role=user["role"],
        ttl_s=settings.token_ttl_s,
        generation=user["session_generation"],
    )
    return TokenResponse(access_token=token, token_type="bearer", expires_in=settings.token_ttl_s)


async def logout(pool: asyncpg.Pool, nc: Client, revoked: RevokedSessions, principal: Principal) -> None:
    """End the caller's session: stored first, then announced to every service."""
    session_id, expires_at = principal.session_id, principal.expires_at
    if session_id is None or expires_at is None:
        raise ApiError(400, "not_a_session", "API keys are revoked with DELETE /api/auth/api-keys/{id}")
    await store.insert_revoked_session(pool, session_id=session_id, user_id=principal.user_id, expires_at=expires_at)
    revoked.add(session_id, expires_at)
    event = contracts.SessionRevoked(session_id=session_id, expires_at=expires_at)
    await nc.publish(contracts.Subjects.SESSION_REVOKED, contracts.encode(event))


async def me(pool: asyncpg.Pool, principal: Principal) -> User:
    row = await store.user_by_id(pool, principal.user_id)
    if row is None:
        raise ApiError(401, "unauthorized", "this account no longer exists", headers={"WWW-Authenticate": "Bearer"})
    return to(User, row)


async def create_api_key(pool: asyncpg.Pool, principal: Principal, data: ApiKeyCreate) -> ApiKeyCreated:
    key, prefix, key_hash = new_api_key()
    expires_at = datetime.now(UTC) + timedelta(days=data.expires_in_days) if data.expires_in_days else None
    row = await store.insert_api_key(
        pool,
        key_id=new_id("key"),
        user_id=principal.user_id,
        name=data.name,
        prefix=prefix,
        key_hash=key_hash,
        scope=data.scope,
        expires_at=expires_at,
    )
    return ApiKeyCreated(**{f: row[f] for f in ApiKey.__struct_fields__}, key=key)


async def list_api_keys(pool: asyncpg.Pool, principal: Principal) -> list[ApiKey]:
    return [to(ApiKey, row) for row in await store.list_api_keys(pool, principal.user_id)]


async def revoke_api_key(pool: asyncpg.Pool, principal: Principal, key_id: str) -> None:
    if not await store.revoke_api_key(pool, key_id=key_id, user_id=principal.user_id):
        raise not_found("API key")


async def create_invite(pool: asyncpg.Pool, principal: Principal, data: InviteCreate) -> Invite:
    expires_at = datetime.now(UTC) + timedelta(hours=data.expires_in_hours) if data.expires_in_hours else None
    row = await store.insert_invite(
        pool,
        code=secrets.token_urlsafe(12),
        created_by=principal.user_id,
        max_uses=data.max_uses,
        expires_at=expires_at,
    )
    return to(Invite, row)
