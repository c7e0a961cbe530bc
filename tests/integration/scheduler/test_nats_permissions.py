"""Agents authenticate to NATS as themselves and may only speak for themselves (services/common/nats_auth.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import nats
import pytest
from nats.js.api import ConsumerConfig

from services.common import contracts
from services.common.contracts import Subjects
from tests.helpers import eventually

from .helpers import connect_as, finished, job_on, progressed, until_progress

pytestmark = pytest.mark.integration


def beat(agent_id: str, hostname: str) -> bytes:
    return contracts.encode(
        contracts.AgentHeartbeat(agent_id=agent_id, hostname=hostname, sent_at=datetime.now(UTC), memory_total_mb=1024)
    )


async def test_a_forged_heartbeat_is_refused_by_nats_and_not_recorded(scheduler, nats_server, pool):
    errors: list[str] = []
    forger = await connect_as(nats_server, "fleet-forger", errors)
    nats_server.add_agent("fleet-victim")  # a real agent's user exists; it is just not this one
    try:
        await forger.publish(Subjects.agent_heartbeat("fleet-victim"), beat("fleet-victim", "forged-host"))
        # Its own subject with another agent's id in the body: NATS lets it through, the scheduler drops it.
        await forger.publish(Subjects.agent_heartbeat("fleet-forger"), beat("fleet-victim", "forged-host"))
        await forger.publish(Subjects.agent_heartbeat("fleet-forger"), beat("fleet-forger", "honest-host"))
        await forger.flush()
        await eventually(lambda: _async(any('publish to "agent.heartbeat.fleet-victim"' in e for e in errors)))

        async def honest_recorded():
            return await pool.fetchval("SELECT hostname FROM agents WHERE id = 'fleet-forger'")

        assert await eventually(honest_recorded) == "honest-host"
        await asyncio.sleep(0.5)  # a flush later still
        assert (
            await pool.fetchval("SELECT count(*) FROM agents WHERE id = 'fleet-victim' OR hostname = 'forged-host'")
            == 0
        )
        assert forger.is_connected, "a refused publish does not cost the agent its connection"
    finally:
        await forger.close()


async def test_an_agent_cannot_take_another_agents_work(nats_server):
    errors: list[str] = []
    thief = await connect_as(nats_server, "fleet-thief", errors)
    nats_server.add_agent("fleet-worker")
    js = thief.jetstream()
    try:
        await thief.subscribe(Subjects.JOB_DISPATCH_ALL)
        await thief.flush()
        await eventually(lambda: _async(any('subscription to "job.dispatch.>"' in e for e in errors)))
        with pytest.raises(nats.errors.TimeoutError):  # its own consumer name, filtered on the other agent's queue
            await js.add_consumer(
                "DISPATCH",
                ConsumerConfig(
                    name="agent-fleet-thief",
                    durable_name="agent-fleet-thief",
                    filter_subject=Subjects.job_dispatch("fleet-worker"),
                ),
                timeout=1,
            )
        with pytest.raises(nats.errors.TimeoutError):  # the other agent's consumer
            await js.consumer_info("DISPATCH", "agent-fleet-worker", timeout=1)
        # Its own consumer works.
        sub = await js.pull_subscribe(
            Subjects.job_dispatch("fleet-thief"), durable="agent-fleet-thief", stream="DISPATCH"
        )
        await sub.unsubscribe()
    finally:
        await thief.close()


async def test_an_agent_cannot_report_on_a_job_dispatched_to_another(scheduler, nats_server, pool, people, tmp_path):
    owner_errors: list[str] = []
    intruder_errors: list[str] = []
    owner = await connect_as(nats_server, "events-owner", owner_errors)
    intruder = await connect_as(nats_server, "events-intruder", intruder_errors)
    beating = asyncio.create_task(_beat_forever(owner, "events-owner"))  # a silent agent's jobs are re-queued
    await eventually(lambda: pool.fetchval("SELECT offline_since IS NULL FROM agents WHERE id = 'events-owner'"))
    job_id = await job_on(pool, people["fleet-owner"][0], tmp_path, "events-owner", attempt=1)
    forged = contracts.encode(finished(job_id, "events-owner", 1))
    try:
        with pytest.raises(nats.errors.TimeoutError):  # JetStream never sees it, so never acknowledges it
            await intruder.jetstream().publish(Subjects.job_status("events-owner", job_id), forged, timeout=1)
        await intruder.publish(Subjects.job_status("events-owner", job_id), forged)
        await intruder.flush()
        refused = f'publish to "{Subjects.job_status("events-owner", job_id)}"'
        await eventually(
            lambda: _async(sum(refused in e and "permissions violation" in e for e in intruder_errors) == 2)
        )
        # On its own subject NATS takes it, and the scheduler drops it: the job is not the intruder's.
        await intruder.jetstream().publish(
            Subjects.job_status("events-intruder", job_id),
            contracts.encode(finished(job_id, "events-intruder", 1)),
            timeout=5,
        )
        await owner.jetstream().publish(
            Subjects.job_status("events-owner", job_id), contracts.encode(progressed(job_id, 1, 1)), timeout=5
        )
        await until_progress(pool, job_id, 1)  # handled in order: the intruder's event was handled before it
        assert await pool.fetchval("SELECT state FROM jobs WHERE id = $1", job_id) == "running"

        await owner.jetstream().publish(Subjects.job_status("events-owner", job_id), forged, timeout=5)

        async def succeeded():
            return await pool.fetchval("SELECT state FROM jobs WHERE id = $1", job_id) == "succeeded"

        await eventually(succeeded)
        assert intruder.is_connected and not owner_errors
    finally:
        beating.cancel()
        await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE id = $1 AND state <> 'succeeded'", job_id)
        await owner.close()
        await intruder.close()


async def _beat_forever(nc, agent_id: str) -> None:
    while True:
        await nc.publish(Subjects.agent_heartbeat(agent_id), beat(agent_id, "events-host"))
        await asyncio.sleep(0.3)


async def _async(value):
    return value
