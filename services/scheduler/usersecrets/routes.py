"""/api/secrets: the caller's own secrets (trackers' credentials their jobs get); a value goes in, never out."""

from __future__ import annotations

import asyncpg
from litestar import Controller, delete, get, put

from services.common.dependencies import Injected
from services.common.security import Principal

from ..settings import SchedulerSettings
from . import service
from .views import SecretList, SecretStatus, SecretValue


class SecretController(Controller):
    path = "/api/secrets"
    tags = ["secrets"]

    @get("/", summary="Every secret a job may be given, with whether the caller set it (never a value)")
    async def list_secrets(
        self, pool: asyncpg.Pool, settings: Injected[SchedulerSettings], principal: Principal
    ) -> SecretList:
        return await service.listing(pool, settings, principal.user_id)

    @put("/{name:str}", status_code=200, summary="Set or replace one of the caller's secrets (stored encrypted)")
    async def set_secret(
        self,
        pool: asyncpg.Pool,
        settings: Injected[SchedulerSettings],
        principal: Principal,
        name: str,
        data: SecretValue,
    ) -> SecretStatus:
        return await service.put(pool, settings, principal.user_id, name, data)

    @delete("/{name:str}", status_code=204, summary="Delete one of the caller's secrets")
    async def delete_secret(
        self, pool: asyncpg.Pool, settings: Injected[SchedulerSettings], principal: Principal, name: str
    ) -> None:
        await service.remove(pool, settings, principal.user_id, name)
