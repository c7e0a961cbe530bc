"""HTTP routes of /api/auth."""

from __future__ import annotations

from typing import Annotated

from asyncpg import Pool
from litestar import Controller, Request, delete, get, patch, post
from litestar.params import Parameter
from nats.aio.client import Client

from services.common.dependencies import Injected
from services.common.errors import not_found
from services.common.net import client_address, client_bucket
from services.common.security import ANYONE, Principal, RevokedSessions

from . import admin, service, store
from .schemas import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    Invite,
    InviteCreate,
    LoginRequest,
    PasswordReset,
    RegisterRequest,
    TokenResponse,
    User,
    UserChange,
    UserPage,
    to,
)
from .settings import AuthSettings

PUBLIC = {"public": True}
ADMIN = {"admin": True}


def caller_address(request: Request, settings: AuthSettings) -> str:
    """The caller, as rate limits count it: X-Forwarded-For counts only as written by the trusted proxies (the
    gateway, TLS), and an IPv6 address by its /64."""
    peer = request.client.host if request.client else "unknown"
    return client_bucket(client_address(peer, request.headers.get("x-forwarded-for"), settings.trusted_networks))


class AuthController(Controller):
    path = "/api/auth"
    tags = ["auth"]

    @post("/register", opt=PUBLIC, security=ANYONE, status_code=201, summary="Open an account with an invite code")
    async def register(
        self, request: Request, pool: Pool, settings: Injected[AuthSettings], data: RegisterRequest
    ) -> User:
        return await service.register(pool, settings, data, caller_address(request, settings))

    @post(
        "/login",
        opt=PUBLIC,
        security=ANYONE,
        status_code=200,
        summary="Exchange a username and password for an access token",
    )
    async def login(
        self, request: Request, pool: Pool, settings: Injected[AuthSettings], data: LoginRequest
    ) -> TokenResponse:
        return await service.login(
            pool, settings, username=data.username, password=data.password, address=caller_address(request, settings)
        )

    @post("/logout", status_code=204, summary="Revoke the access token used for this call")
    async def logout(self, pool: Pool, nc: Client, revoked: RevokedSessions, principal: Principal) -> None:
        await service.logout(pool, nc, revoked, principal)

    @get("/me", summary="Who the caller is")
    async def me(self, pool: Pool, principal: Principal) -> User:
        return await service.me(pool, principal)

    @post("/api-keys", status_code=201, summary="Create a personal API key (shown once)")
    async def create_api_key(self, pool: Pool, principal: Principal, data: ApiKeyCreate) -> ApiKeyCreated:
        return await service.create_api_key(pool, principal, data)

    @get("/api-keys", summary="List the caller's API keys (without the keys)")
    async def list_api_keys(self, pool: Pool, principal: Principal) -> list[ApiKey]:
        return await service.list_api_keys(pool, principal)

    @delete("/api-keys/{key_id:str}", status_code=204, summary="Revoke one of the caller's API keys")
    async def revoke_api_key(self, pool: Pool, principal: Principal, key_id: str) -> None:
        await service.revoke_api_key(pool, principal, key_id)


class AdminController(Controller):
    """Routes for admins only."""

    path = "/api/auth"
    tags = ["auth: admin"]
    opt = ADMIN

    @post("/invites", status_code=201, summary="Create an invite code")
    async def create_invite(self, pool: Pool, principal: Principal, data: InviteCreate) -> Invite:
        return await service.create_invite(pool, principal, data)

    @get("/invites", summary="List invite codes")
    async def list_invites(self, pool: Pool) -> list[Invite]:
        return [to(Invite, row) for row in await store.list_invites(pool)]

    @delete("/invites/{code:str}", status_code=204, summary="Revoke an invite code")
    async def revoke_invite(self, pool: Pool, code: str) -> None:
        if not await store.revoke_invite(pool, code):
            raise not_found("invite code")

    @get("/users", summary="List accounts, by username")
    async def list_users(
        self,
        pool: Pool,
        cursor: Annotated[str | None, Parameter(description="username to continue after")] = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> UserPage:
        rows = await store.list_users(pool, after=cursor, limit=limit + 1)
        items = [to(User, row) for row in rows[:limit]]
        return UserPage(items=items, next_cursor=items[-1].username if len(rows) > limit else None)

    @patch("/users/{user_id:str}", summary="Disable or enable an account, or change its role (ends its sessions)")
    async def change_user(
        self, pool: Pool, nc: Client, revoked: RevokedSessions, principal: Principal, user_id: str, data: UserChange
    ) -> User:
        return await admin.change_user(pool, nc, revoked, principal, user_id, data)

    @post("/users/{user_id:str}/password", status_code=204, summary="Set a new password (ends the user's sessions)")
    async def reset_password(
        self, pool: Pool, nc: Client, revoked: RevokedSessions, user_id: str, data: PasswordReset
    ) -> None:
        await admin.reset_password(pool, nc, revoked, user_id, data)

    @post("/users/{user_id:str}/revoke", status_code=204, summary="End every session and revoke every API key")
    async def revoke_access(self, pool: Pool, nc: Client, revoked: RevokedSessions, user_id: str) -> None:
        await admin.revoke_access(pool, nc, revoked, user_id)
