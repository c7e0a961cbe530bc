"""The resource history's retention on the real Postgres: raw → 1-minute → 1-hour averages → deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.scheduler.fleet import store as agents_store
from services.scheduler.fleet.maintenance import apply_retention
from services.scheduler.settings import FleetSettings
from tests.helpers import eventually

pytestmark = pytest.mark.integration

AGENT = "ret-agent"
SETTINGS = FleetSettings(raw_keep_s=86_400, minute_keep_s=2 * 86_400, max_age_s=5 * 86_400)


def minute_floor(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


async def add(pool, at: datetime, cpu: float, samples: int = 1, util: float | None = None) -> None:
    async with pool.acquire() as conn:
        await agents_store.insert_samples(
            conn,
            [(AGENT, at, samples, cpu, 1000.0, 4000.0, 1.0)],
            [(AGENT, at, 0, samples, util if util is not None else cpu, 500.0, 8000.0, None, 100.0)],
        )


async def rows(pool, table: str, step_s: int):
    return await pool.fetch(f"SELECT * FROM {table} WHERE agent_id = $1 AND step_s = $2 ORDER BY at", AGENT, step_s)


async def test_raw_rolls_into_minutes_then_hours_and_the_oldest_is_deleted(pool, scheduler, people):
    now = datetime.now(UTC)
    day_old = minute_floor(now - timedelta(hours=30))
    await add(pool, day_old + timedelta(seconds=5), cpu=10, samples=1)
    await add(pool, day_old + timedelta(seconds=25), cpu=40, samples=2)  # weighs twice
    await add(pool, day_old + timedelta(minutes=1, seconds=5), cpu=90)
    three_days = (now - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    await add(pool, three_days + timedelta(minutes=2), cpu=20)
    await add(pool, three_days + timedelta(minutes=40), cpu=60)
    await add(pool, now - timedelta(days=6), cpu=99)
    await add(pool, now - timedelta(hours=1), cpu=5)

    # The in-process scheduler's own first pass may hold the lock this very moment: ours runs once it is free.
    assert await eventually(lambda: apply_retention(pool, SETTINGS))

    raw = await rows(pool, "agent_metrics", 0)
    assert [r["cpu_pct"] for r in raw] == [5], "only the last day stays raw"
    minutes = await rows(pool, "agent_metrics", 60)
    assert [(r["at"], r["samples"], r["cpu_pct"]) for r in minutes] == [
        (day_old, 3, 30.0),
        (day_old + timedelta(minutes=1), 1, 90.0),
    ]
    hours = await rows(pool, "agent_metrics", 3600)
    assert [(r["at"], r["samples"], r["cpu_pct"]) for r in hours] == [(three_days, 2, 40.0)]
    gpu_minutes = await rows(pool, "agent_gpu_metrics", 60)
    assert gpu_minutes[0]["utilization_pct"] == 30.0 and gpu_minutes[0]["temperature_c"] is None
    assert gpu_minutes[0]["power_w"] == 100.0
    assert not [
        r
        for r in await pool.fetch("SELECT cpu_pct FROM agent_metrics WHERE agent_id = $1", AGENT)
        if r["cpu_pct"] == 99
    ], "older than the longest retention: deleted"

    assert await apply_retention(pool, SETTINGS)  # a second pass changes nothing
    assert [tuple(r) for r in await rows(pool, "agent_metrics", 60)] == [tuple(r) for r in minutes]

    # The query route reads every resolution: one 6-day window averages all that is left.
    admin = people["fleet-admin"][1]
    r = await scheduler.get(
        f"/api/agents/{AGENT}/metrics",
        headers=admin,
        params={"from": (now - timedelta(days=4)).isoformat(), "to": now.isoformat(), "step": 4 * 86_400},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert sum(p["samples"] for p in body["host"]) == 3 + 1 + 2 + 1
    assert body["gpus"][0]["index"] == 0 and body["gpus"][0]["points"]
    hourly = (
        await scheduler.get(
            f"/api/agents/{AGENT}/metrics",
            headers=admin,
            params={
                "from": (three_days - timedelta(hours=1)).isoformat(),
                "to": (three_days + timedelta(hours=2)).isoformat(),
                "step": 3600,
            },
        )
    ).json()
    assert [(p["samples"], p["cpu_pct"]) for p in hourly["host"]] == [(2, 40.0)]
