"""Reconciliation against heartbeats (issue 14, item 1): a running job that its agent, online, no longer lists
(the agent was killed with -9 and came back with the same id and `running_jobs: []`) goes back to the queue, or
fails with reason `lost_on_agent`, after LLMCT_LOST_GRACE_S; it never stays `running` with its GPUs booked."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from litestar.testing import AsyncTestClient

from services.common import contracts
from services.common.bus import close_bus, connect_bus, ensure_streams
from services.common.security import new_id
from services.common.settings import from_env
from services.scheduler.jobs import recovery
from services.scheduler.settings import FleetSettings
from tests.helpers import eventually

from .helpers import HUGE_GPU_MB, PRIORITY, agent_row, job_row, pending_job, user

pytestmark = pytest.mark.integration

# Agents are offline only after a long silence here, so that a quick restart is seen as the same agent: the
# reconciliation, not the offline sweep, must free the job.
RECONCILE_ENV = {"LLMCT_AGENT_OFFLINE_S": "30", "LLMCT_LOST_GRACE_S": "3"}  # 3 s: a beat late under load


@pytest.fixture(scope="module")
async def scheduler(fleet_env, settings, owners):
    from services.scheduler.app import create_app

    fleet = from_env(FleetSettings, {**fleet_env, **RECONCILE_ENV})
    async with AsyncTestClient(app=create_app(dataclasses.replace(settings, **dataclasses.asdict(fleet)))) as client:
        yield client


@pytest.fixture
async def bus(nats_server, pool):
    nc = await connect_bus(nats_server.url, "reconcile-test")
    await ensure_streams(nc.jetstream())
    yield nc
    await close_bus(nc)
    await pool.execute("DELETE FROM agents WHERE hostname = 'queue-test'")


async def beat(pool, agent_id: str, *running: str) -> None:
    """What a heartbeat of `agent_id` listing `running` leaves in its row."""
    resources = {"running_jobs": list(running), "running_deployments": []}
    await pool.execute(
        "UPDATE agents SET resources = $2, last_seen = now(), offline_since = NULL WHERE id = $1", agent_id, resources
    )


async def on(pool, job_id: str, agent_id: str) -> None:
    await pool.execute(
        "UPDATE jobs SET state = 'running', agent_id = $2, gpu_ids = '{0}', started_at = now() WHERE id = $1",
        job_id,
        agent_id,
    )


async def test_an_unlisted_running_job_is_given_back_after_the_grace(pool, bus, tmp_path):
    owner = await user(pool, "unlisted")
    agent = await agent_row(pool, gpus=3)
    listed, once, last = [await pending_job(pool, owner, tmp_path, retries=r) for r in (1, 1, 0)]
    for job in (listed, once, last):
        await on(pool, job, agent)
    await beat(pool, agent, listed)

    assert await recovery.reconcile_unlisted(pool, bus, grace_s=0.5) == 0, "the grace starts, nothing moves yet"
    assert {(await job_row(pool, j))["state"] for j in (listed, once, last)} == {"running"}
    await asyncio.sleep(0.7)
    assert await recovery.reconcile_unlisted(pool, bus, grace_s=0.5) == 1

    kept = await pool.fetchrow("SELECT state, unlisted_since FROM jobs WHERE id = $1", listed)
    assert (kept["state"], kept["unlisted_since"]) == ("running", None), "a listed job is left alone"
    requeued = await pool.fetchrow("SELECT state, reason, message, agent_id, requeues FROM jobs WHERE id = $1", once)
    assert (requeued["state"], requeued["reason"], requeued["agent_id"], requeued["requeues"]) == (
        "pending",
        "requeued",
        None,
        1,
    )
    assert "no longer runs it" in requeued["message"]
    failed = await pool.fetchrow("SELECT state, reason, message, gpu_ids FROM jobs WHERE id = $1", last)
    assert (failed["state"], failed["reason"]) == ("failed", "lost_on_agent") and "no retries left" in failed["message"]

    # Listed again within the grace, the clock starts over: a job is given back only after a whole grace unlisted.
    await on(pool, once, agent)
    await beat(pool, agent, listed)
    await recovery.reconcile_unlisted(pool, bus, grace_s=0.5)
    await asyncio.sleep(0.3)
    await beat(pool, agent, listed, once)
    await recovery.reconcile_unlisted(pool, bus, grace_s=0.5)
    await asyncio.sleep(0.3)
    await beat(pool, agent, listed)
    assert await recovery.reconcile_unlisted(pool, bus, grace_s=0.5) == 0
    assert (await job_row(pool, once))["state"] == "running"


async def test_an_agent_back_without_its_job_gives_it_back(scheduler, start_agent, pool, tmp_path):
    """The live-stack failure: kill -9, back within the offline threshold, `running_jobs: []`."""
    owner = await user(pool, "restarted")
    agent_id = f"back-{new_id('a')[-6:]}"
    first = start_agent(agent_id, gpus=1, gpu_memory_mb=HUGE_GPU_MB)

    async def registered():
        return await pool.fetchval("SELECT 1 FROM agents WHERE id = $1 AND offline_since IS NULL", agent_id)

    await eventually(registered, timeout=30)
    # Its agent is the only one the job may go to: any other still live in the table (another module's, stopped
    # moments ago) is offline from now on.
    await pool.execute("UPDATE agents SET offline_since = now() WHERE id <> $1 AND offline_since IS NULL", agent_id)
    job_id = await pending_job(pool, owner, tmp_path, priority=PRIORITY + 6)

    async def running():
        row = await job_row(pool, job_id)
        return row if row["state"] == "running" else None

    assert (await eventually(running, timeout=30))["agent_id"] == agent_id
    first.process.kill()  # no goodbye, and back at once with the same id: never offline
    first.process.wait(10)
    start_agent(agent_id, gpus=1, gpu_memory_mb=HUGE_GPU_MB)

    async def finished():
        row = await pool.fetchrow("SELECT state, agent_id, requeues FROM jobs WHERE id = $1", job_id)
        return row if row["state"] in contracts.TERMINAL_JOB_STATES else None

    row = await eventually(finished, timeout=60)
    assert (row["state"], row["agent_id"], row["requeues"]) == ("succeeded", agent_id, 1), row
    events = await pool.fetch("SELECT reason, message FROM job_events WHERE job_id = $1 ORDER BY id", job_id)
    assert any(e["reason"] == "requeued" and "no longer runs it" in (e["message"] or "") for e in events), events
    offline = await pool.fetchval("SELECT offline_since FROM agents WHERE id = $1", agent_id)
    assert offline is None, "the agent never went offline: the reconciliation freed the job"


async def test_a_dispatch_its_agent_took_and_lost_is_given_back(pool, bus, tmp_path):
    """The agent took the dispatch and was killed before its JobStarted went out; it is back with the same id,
    beating, and lists nothing: the job does not stay `dispatched` for ever (the stale-dispatch sweep only takes
    jobs of agents no longer heard from)."""
    owner = await user(pool, "unlisted-dispatch")
    agent = await agent_row(pool, gpus=1)
    lost, taken = [await pending_job(pool, owner, tmp_path, retries=1) for _ in range(2)]
    for job in (lost, taken):
        await pool.execute(
            "UPDATE jobs SET state = 'dispatched', agent_id = $2, dispatched_at = now() WHERE id = $1", job, agent
        )
    await beat(pool, agent, taken)
    await recovery.reconcile_unlisted(pool, bus, grace_s=0.2, dispatched_grace_s=1.0)
    await asyncio.sleep(0.5)
    await beat(pool, agent, taken)
    assert await recovery.reconcile_unlisted(pool, bus, grace_s=0.2, dispatched_grace_s=1.0) == 0, "a dispatch waits"
    await asyncio.sleep(0.7)
    assert await recovery.reconcile_unlisted(pool, bus, grace_s=0.2, dispatched_grace_s=1.0) == 1
    row = await pool.fetchrow("SELECT state, reason, agent_id, requeues FROM jobs WHERE id = $1", lost)
    assert (row["state"], row["reason"], row["agent_id"], row["requeues"]) == ("pending", "requeued", None, 1)
    assert (await job_row(pool, taken))["state"] == "dispatched", "a dispatch its agent lists is left alone"
