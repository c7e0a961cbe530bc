"""HTTP routes of joining: admins' join tokens and agents' credentials, and the join itself (the token is the
credential: no login)."""

from __future__ import annotations

from asyncpg import Pool
from litestar import Controller, Request, delete, get, post
from nats.aio.client import Client

from services.common.dependencies import Injected
from services.common.net import client_address, client_bucket, parse_networks
from services.common.security import ANYONE, Principal

from ..settings import SchedulerSettings
from . import joining
from .joining import AgentCredentials, AgentJoinSettings, JoinRequest, JoinToken, JoinTokenCreate, JoinTokenCreated

ADMIN = {"admin": True}


def caller_address(request: Request, settings: SchedulerSettings) -> str:
    """The caller as the join throttle counts it (X-Forwarded-For only as written by the trusted proxies)."""
    peer = request.client.host if request.client else "unknown"
    trusted = parse_networks(settings.trusted_proxies)
    return client_bucket(client_address(peer, request.headers.get("x-forwarded-for"), trusted))


class JoinController(Controller):
    path = "/api/agents"
    tags = ["agents"]

    @post(
        "/join-tokens",
        status_code=201,
        summary="Create a join token for a GPU host (shown once)",
        opt=ADMIN,
    )
    async def create_token(self, pool: Pool, principal: Principal, data: JoinTokenCreate) -> JoinTokenCreated:
        return await joining.create_token(pool, principal, data)

    @get("/join-tokens", summary="Join tokens, newest first, with the agents that joined with each", opt=ADMIN)
    async def list_tokens(self, pool: Pool) -> list[JoinToken]:
        return await joining.list_tokens(pool)

    @delete(
        "/join-tokens/{token_id:str}",
        status_code=200,
        summary="Revoke a join token: no further joins (agents that joined keep their access)",
        opt=ADMIN,
    )
    async def revoke_token(self, pool: Pool, token_id: str) -> JoinToken:
        return await joining.revoke_token(pool, token_id)

    @post(
        "/join",
        status_code=201,
        opt={"public": True},
        security=ANYONE,
        summary="A GPU host joins with a join token: its agent's own NATS user and settings (`llmct agent join`)",
    )
    async def join(
        self, request: Request, pool: Pool, nc: Client, settings: Injected[SchedulerSettings], data: JoinRequest
    ) -> AgentJoinSettings:
        return await joining.join(pool, nc, settings, data, caller_address(request, settings))

    @get("/credentials", summary="Agents that joined with a token and hold their own NATS user", opt=ADMIN)
    async def list_credentials(self, pool: Pool) -> list[AgentCredentials]:
        return await joining.list_credentials(pool)

    @delete(
        "/{agent_id:str}/credentials",
        status_code=204,
        summary="Revoke a joined agent's NATS user: its connection is closed at once and it cannot log in again",
        opt=ADMIN,
    )
    async def revoke_credentials(self, pool: Pool, nc: Client, agent_id: str) -> None:
        await joining.revoke_credentials(pool, nc, agent_id)
