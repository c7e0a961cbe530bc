"""The scheduler's side of the fleet: follow heartbeats, mark silent agents offline, forget long-gone ones,
and keep the resource history within its retention (raw → 1-minute → 1-hour averages → deleted)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.common.contracts import Subjects

from ..jobs import recovery
from ..settings import FleetSettings
from . import store
from .heartbeats import HeartbeatRecorder

log = logging.getLogger(__name__)

RETENTION_LOCK = 7_002  # advisory lock: one retention pass at a time across scheduler replicas


async def sweep_agents(pool, settings: FleetSettings, nc=None) -> None:
    """Mark silent agents offline (their jobs re-queued or failed: jobs/recovery.py) and forget those offline for
    too long."""
    async with pool.acquire() as conn:
        gone = await store.mark_offline(conn, settings.offline_after_s)
        for row in gone:
            log.warning("agent %s offline: no heartbeat since %s", row["id"], row["last_seen"].isoformat())
        for agent_id in await store.remove_long_offline(conn, settings.remove_after_s):
            log.info("agent %s removed after %.0f s offline", agent_id, settings.remove_after_s)
    if nc is not None:
        await recovery.requeue_lost(pool, nc)


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


async def _flush_forever(app, recorder: HeartbeatRecorder, settings: FleetSettings) -> None:
    while True:
        await asyncio.sleep(settings.flush_s)
        try:
            if await recorder.flush(app.state.pool) and hasattr(app.state, "wake"):
                app.state.wake.set()
        except Exception:  # noqa: BLE001 - Postgres away: the beats wait for the next flush
            log.exception("heartbeats not written")


async def _maintain_forever(app, settings: FleetSettings) -> None:
    loop = asyncio.get_running_loop()
    next_retention = loop.time()
    while True:
        try:
            await sweep_agents(app.state.pool, settings, app.state.nc)
            if loop.time() >= next_retention:
                await apply_retention(app.state.pool, settings)
                next_retention = loop.time() + settings.retention_every_s
        except Exception:  # noqa: BLE001 - the next pass retries
            log.exception("fleet maintenance failed")
        await asyncio.sleep(settings.sweep_s)


async def start(app) -> None:
    """Follow every agent's heartbeats (queue group: one replica records each) and start the fleet loops."""
    settings: FleetSettings = app.state.settings
    recorder = HeartbeatRecorder(settings.sample_s)
    app.state.heartbeats = recorder

    async def on_heartbeat(msg) -> None:
        recorder.add(msg.subject, msg.data)

    # A burst of a thousand beats must not cut the subscription as a slow consumer.
    app.state.fleet_sub = await app.state.nc.subscribe(Subjects.AGENT_HEARTBEAT_ALL, queue="scheduler",
                                                       cb=on_heartbeat, pending_msgs_limit=200_000)
    app.state.fleet_tasks = [asyncio.create_task(_flush_forever(app, recorder, settings)),
                             asyncio.create_task(_maintain_forever(app, settings))]


async def stop(app) -> None:
    with contextlib.suppress(Exception):
        await app.state.fleet_sub.unsubscribe()
    for task in app.state.fleet_tasks:
        task.cancel()
    await asyncio.gather(*app.state.fleet_tasks, return_exceptions=True)
    with contextlib.suppress(Exception):  # what arrived last is still worth writing
        await app.state.heartbeats.flush(app.state.pool, final=True)
