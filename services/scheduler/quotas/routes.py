"""Per-user limits (`/api/quotas`): concurrent GPUs, queued jobs, active deployments, the highest priority a user
may ask and the longest a job of theirs may run.

An admin's setting wins; a limit left unset (null) is the platform's default from settings. The queue
(jobs/queue.py) is the one reader of limits; this module shows them with what the user holds now and lets admins
set them.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
from asyncpg import Pool
from litestar import Controller, get, put

from services.common import readmodels
from services.common.dependencies import Injected
from services.common.errors import not_found
from services.common.security import Principal

from ..jobs import queue
from ..settings import SchedulerSettings


class QuotaSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What an admin set for one user, every limit at once; null is the platform's default."""

    max_deployments: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    max_gpus: Annotated[int, msgspec.Meta(ge=0, le=1024)] | None = None
    max_queued: Annotated[int, msgspec.Meta(ge=0, le=100_000)] | None = None
    max_priority: Annotated[int, msgspec.Meta(ge=-100, le=100)] | None = None
    max_run_h: Annotated[float, msgspec.Meta(gt=0, le=8_760)] | None = None


class Quota(msgspec.Struct, kw_only=True):
    """A user's limits in force (an admin's setting, else the platform's default) and what they use now."""

    user_id: str
    max_deployments: int
    max_gpus: int | None  # None: no limit
    max_queued: int
    max_priority: int  # the highest priority the user may give a job
    max_run_h: float  # hours a job of the user's (not a deployment) may run before it is stopped (`time_limit`)
    custom: QuotaSettings  # what an admin set; a null here means the limit in force is the default
    gpus_held: int
    jobs_queued: int
    gpu_hours_recent: float  # in the fair-share window: fewer goes first


async def quota_of(conn, settings: SchedulerSettings, user_id: str) -> Quota:
    limits = (await queue.quotas(conn, [user_id], settings))[user_id]
    row = await conn.fetchrow(
        "SELECT max_deployments, max_gpus, max_queued, max_priority, max_run_h FROM user_quotas WHERE user_id = $1",
        user_id,
    )
    queued = await conn.fetchval("SELECT count(*) FROM jobs WHERE owner_id = $1 AND state = 'pending'", user_id)
    return Quota(
        user_id=user_id,
        max_deployments=limits.max_deployments,
        max_gpus=limits.max_gpus,
        max_queued=limits.max_queued,
        max_priority=limits.max_priority,
        max_run_h=limits.max_run_h,
        custom=QuotaSettings(**dict(row)) if row else QuotaSettings(),
        gpus_held=(await queue.held_gpus(conn))[user_id],
        jobs_queued=queued,
        gpu_hours_recent=round(await queue.gpu_hours(conn, user_id, settings.fair_share_window_h), 3),
    )


async def _existing_user(conn, user_id: str) -> None:
    if not await readmodels.users_exist(conn, user_id):
        raise not_found("user")


class QuotaController(Controller):
    path = "/api/quotas"
    tags = ["quotas"]

    @get("/me", summary="The caller's limits and use")
    async def mine(self, pool: Pool, settings: Injected[SchedulerSettings], principal: Principal) -> Quota:
        async with pool.acquire() as conn:
            return await quota_of(conn, settings, principal.user_id)

    @get("/{user_id:str}", opt={"admin": True}, summary="A user's limits and use (admins)")
    async def of_user(self, pool: Pool, settings: Injected[SchedulerSettings], user_id: str) -> Quota:
        async with pool.acquire() as conn:
            await _existing_user(conn, user_id)
            return await quota_of(conn, settings, user_id)

    @put("/{user_id:str}", opt={"admin": True}, summary="Set a user's limits (admins; null: the default)")
    async def set_quota(
        self,
        pool: Pool,
        settings: Injected[SchedulerSettings],
        wake: asyncio.Event,
        principal: Principal,
        user_id: str,
        data: QuotaSettings,
    ) -> Quota:
        async with pool.acquire() as conn:
            await _existing_user(conn, user_id)
            await conn.execute(
                "INSERT INTO user_quotas (user_id, max_deployments, max_gpus, max_queued, max_priority, max_run_h, "
                "updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id) DO UPDATE SET "
                "max_deployments = $2, max_gpus = $3, max_queued = $4, max_priority = $5, max_run_h = $6, "
                "updated_by = $7, updated_at = now()",
                user_id,
                data.max_deployments,
                data.max_gpus,
                data.max_queued,
                data.max_priority,
                data.max_run_h,
                principal.user_id,
            )
            quota = await quota_of(conn, settings, user_id)
        wake.set()  # a raised GPU quota may free queued jobs now
        return quota
