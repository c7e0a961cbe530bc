"""The scheduler's side of the fleet: follow heartbeats, mark silent agents offline, forget long-gone ones,
and keep the resource history within its retention (raw → 1-minute → 1-hour averages → deleted)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.common.lifecycle import Background

from ..context import SchedulerContext
from ..jobs import recovery
from ..settings import FleetSettings
from ..webhooks import outbox
from . import store

log = logging.getLogger(__name__)

RETENTION_LOCK = 7_002  # advisory lock: one retention pass at a time across scheduler replicas


async def sweep_agents(pool, settings: FleetSettings, nc=None) -> None:
    """Mark silent agents offline (their jobs re-queued or failed: jobs/recovery.py), forget those offline for
    too long, and give back the running jobs an online agent's heartbeats stopped listing."""
    async with pool.acquire() as conn:
        async with conn.transaction():  # the webhooks owed, with the change (an outbox)
            gone = await store.mark_offline(conn, settings.offline_after_s)
            await outbox.agents_offline(conn, [row["id"] for row in gone])
        for row in gone:
            log.warning("agent %s offline: no heartbeat since %s", row["id"], row["last_seen"].isoformat())
        for agent_id in await store.remove_long_offline(conn, settings.remove_after_s):
            log.info("agent %s removed after %.0f s offline", agent_id, settings.remove_after_s)
    if nc is not None:
        await recovery.requeue_lost(pool, nc)
        await recovery.reconcile_unlisted(pool, nc, settings.lost_grace_s)


async def apply_retention(pool, settings: FleetSettings) -> bool:
    """Roll raw samples into 1-minute rows and those into 1-hour rows, delete the oldest. False: another replica
    is doing it."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RETENTION_LOCK):
            return False
        for table in ("agent_metrics", "agent_gpu_metrics"):
            await store.roll_up(conn, table, 0, 60, settings.raw_keep_s)
            await store.roll_up(conn, table, 60, 3600, settings.minute_keep_s)
            await store.expire(conn, table, settings.max_age_s)
    return True


async def _flush_forever(context: SchedulerContext) -> None:
    """Write the heartbeats that arrived every `flush_s`, waking the dispatcher when an agent's room changed."""
    settings = context.scheduler_settings
    while True:
        await asyncio.sleep(settings.flush_s)
        try:
            if await context.heartbeats.flush(context.pool):
                context.wake.set()
        except Exception:
            log.exception("heartbeats not written")


async def _maintain_forever(context: SchedulerContext) -> None:
    """Sweep silent agents every `sweep_s`, and apply the metrics retention every `retention_every_s`."""
    settings = context.scheduler_settings
    loop = asyncio.get_running_loop()
    next_retention = loop.time()
    while True:
        try:
            await sweep_agents(context.pool, settings, context.nc)
            if loop.time() >= next_retention:
                await apply_retention(context.pool, settings)
                next_retention = loop.time() + settings.retention_every_s
        except Exception:
            log.exception("fleet maintenance failed")
        await asyncio.sleep(settings.sweep_s)


async def _follow_heartbeats(context: SchedulerContext) -> None:
    """Follow every agent's heartbeats."""
    await context.heartbeats.follow(context.nc)


async def _last_flush(context: SchedulerContext) -> None:
    """Stop following heartbeats, and write what arrived last."""
    await context.heartbeats.unfollow()
    with contextlib.suppress(Exception):  # what arrived last is still worth writing
        await context.heartbeats.flush(context.pool, final=True)


BACKGROUND = (
    Background(name="heartbeats", start=_follow_heartbeats, run=_flush_forever, stop=_last_flush),
    Background(name="fleet maintenance", run=_maintain_forever),
)
