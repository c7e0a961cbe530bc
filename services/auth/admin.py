"""Admins manage accounts: disable, change role, reset a password, end every session and API key.

Each change that takes something away is effective at once: the user's session generation is raised in the
same statement (every service refuses older tokens when `auth.user.revoked` reaches it, and the gateway closes
the user's open WebSockets), and API keys are checked against the database on every request.
"""

from __future__ import annotations

import asyncpg
from nats.aio.client import Client

from services.common import contracts
from services.common.errors import ApiError, not_found
from services.common.security import Principal, RevokedSessions

from . import store
from .schemas import PasswordReset, User, UserChange, to
from .service import check_password_strength, hash_in_thread


def _not_yourself(principal: Principal, user_id: str, what: str) -> None:
    # An admin who disables or demotes themself may leave nobody to undo it.
    if principal.user_id == user_id:
        raise ApiError(409, "own_account", f"admins cannot {what} their own account; ask another admin")


async def announce(nc: Client, revoked: RevokedSessions, row: asyncpg.Record, reason: str) -> None:
    """Refuse the user's older tokens here at once, and tell every other service and the gateway."""
    revoked.revoke_user(row["id"], row["session_generation"])
    event = contracts.UserRevoked(user_id=row["id"], generation=row["session_generation"], reason=reason)
    await nc.publish(contracts.Subjects.USER_REVOKED, contracts.encode(event))
    await nc.flush()  # on the wire before the admin hears "done"


async def change_user(
    pool: asyncpg.Pool, nc: Client, revoked: RevokedSessions, principal: Principal, user_id: str, data: UserChange
) -> User:
    """Disable, enable or change the role of an account; a disabled account's API keys stop too."""
    if data.disabled or (data.role is not None and data.role != "admin"):
        _not_yourself(principal, user_id, "disable or demote")
    before = await store.user_by_id(pool, user_id)
    if before is None:
        raise not_found("user")
    row = await store.update_user(pool, user_id, disabled=data.disabled, role=data.role)
    if row is None:
        raise not_found("user")
    if row["session_generation"] != before["session_generation"]:
        reason = "disabled" if row["disabled"] else "role_changed" if row["role"] != before["role"] else "enabled"
        await announce(nc, revoked, row, reason)
    return to(User, row)


async def reset_password(
    pool: asyncpg.Pool, nc: Client, revoked: RevokedSessions, user_id: str, data: PasswordReset
) -> None:
    """Set a new password for an account and end its sessions (API keys stay: revoke them separately)."""
    user = await store.user_by_id(pool, user_id)
    if user is None:
        raise not_found("user")
    check_password_strength(user["username"], data.password)
    row = await store.end_sessions(pool, user_id, password_hash=await hash_in_thread(data.password))
    if row is None:
        raise not_found("user")
    await announce(nc, revoked, row, "password_reset")


async def revoke_access(pool: asyncpg.Pool, nc: Client, revoked: RevokedSessions, user_id: str) -> int:
    """End every session and revoke every API key of an account; returns how many keys were live."""
    async with pool.acquire() as conn, conn.transaction():
        row = await store.end_sessions(conn, user_id)
        if row is None:
            raise not_found("user")
        keys = await store.revoke_api_keys_of(conn, user_id)
    await announce(nc, revoked, row, "revoked")
    return keys
