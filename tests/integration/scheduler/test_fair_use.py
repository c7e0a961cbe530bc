"""Fair use (issue 14, item 8) with real NATS, Postgres and an agent process: a job stops at its owner's maximum
run time with reason `time_limit` (an admin sets it per user; LLMCT_MAX_RUN_H otherwise), and the limits show in
/api/quotas. The priority cap is tested through the whole platform (tests/e2e/test_jobs_bad_input.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from services.common.security import new_id
from services.scheduler.jobs import service
from tests.helpers import eventually

from .helpers import HUGE_GPU_MB, PRIORITY, job_row, pending_job

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine_bin(tmp_path_factory) -> Path:
    """A stand-in engine (used by start_agent) that would run for a minute."""
    folder = tmp_path_factory.mktemp("long-engine-bin")
    script = folder / "sleeper"
    script.write_text("#!/bin/sh\necho working\nexec sleep 60\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


async def test_a_job_stops_at_its_owners_maximum_run_time(
    scheduler, start_agent, people, pool, bus, settings, tmp_path
):
    owner_id, owner = people["fleet-owner"]
    _, admin = people["fleet-admin"]
    r = await scheduler.put(f"/api/quotas/{owner_id}", json={"max_run_h": 0.0005}, headers=admin)  # 1.8 s
    assert r.status_code == 200 and r.json()["max_run_h"] == pytest.approx(0.0005), r.text
    assert (await scheduler.get("/api/quotas/me", headers=owner)).json()["max_run_h"] == pytest.approx(0.0005)
    try:
        start_agent(f"timed-{new_id('a')[-6:]}", gpus=1, gpu_memory_mb=HUGE_GPU_MB)
        job_id = await pending_job(pool, owner_id, tmp_path, priority=PRIORITY + 7)

        async def running():
            return (await job_row(pool, job_id))["state"] == "running"

        await eventually(running, timeout=30)
        await service.sweep(pool, bus, settings)  # the dispatcher's sweep, called at once: within the limit yet
        assert not await pool.fetchval("SELECT cancel_requested FROM jobs WHERE id = $1", job_id)

        async def stopped():
            await service.sweep(pool, bus, settings)
            row = await pool.fetchrow("SELECT state, reason, message FROM jobs WHERE id = $1", job_id)
            return row if row["state"] in ("succeeded", "failed", "cancelled") else None

        row = await eventually(stopped, timeout=30, interval=0.5)
        assert (row["state"], row["reason"]) == ("failed", "time_limit"), row
        assert "maximum run time" in row["message"]
        events = await pool.fetch("SELECT reason, message FROM job_events WHERE job_id = $1 ORDER BY id", job_id)
        assert any(e["reason"] == "cancel_requested" and "maximum run time (0.0005 h)" in e["message"] for e in events)
        job = (await scheduler.get(f"/api/jobs/{job_id}", headers=owner)).json()
        assert (job["state"], job["reason"]) == ("failed", "time_limit")
    finally:
        await pool.execute("DELETE FROM user_quotas WHERE user_id = $1", owner_id)


async def test_the_platforms_defaults_hold_until_an_admin_sets_a_users_own(scheduler, people, settings, pool):
    owner_id, owner = people["fleet-other"]
    _, admin = people["fleet-admin"]
    mine = (await scheduler.get("/api/quotas/me", headers=owner)).json()
    assert (mine["max_priority"], mine["max_run_h"], mine["max_gpus"]) == (0, settings.max_run_h, 8)
    r = await scheduler.put(f"/api/quotas/{owner_id}", json={"max_priority": 20, "max_run_h": 48}, headers=admin)
    assert (r.json()["max_priority"], r.json()["max_run_h"]) == (20, 48)
    assert_refused = [
        (await scheduler.put(f"/api/quotas/{owner_id}", json=body, headers=admin)).status_code
        for body in ({"max_priority": 101}, {"max_run_h": 0}, {"max_run_h": -1})
    ]
    assert assert_refused == [422, 422, 422]
    await pool.execute("DELETE FROM user_quotas WHERE user_id = $1", owner_id)
