"""Only the job's agent, for the job's current attempt, gets lines into a job's log: agents on their own NATS users
(NATS refuses another agent's ingest subject and `logs.<job>` itself), the scheduler in-process with its relay
(services/scheduler/logs/relay.py), real NATS and Postgres. What a restarted relay or two relays at once do is
test_log_relay_restart.py's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import nats
import pytest

from services.common import contracts
from services.common.contracts import Subjects
from services.scheduler.jobs.service import publish_change
from services.scheduler.jobs.transitions import JobChange
from tests.helpers import eventually

from .helpers import connect_as, job_on, move, ship, stored_lines, until_relayed

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def services_bus(nats_server):
    nc = await nats.connect(nats_server.url)
    yield nc, nc.jetstream()
    await nc.close()


@pytest.fixture
async def online(scheduler, services_bus, pool):
    """online(*agent_ids): those agents beat (on the services' connection) until the test ends, so the scheduler
    neither re-queues their jobs nor places anything on them (no GPUs, no CPU slots)."""
    nc, _ = services_bus
    tasks = []

    async def start(*agent_ids: str) -> None:
        async def beat_forever():
            while True:
                for agent_id in agent_ids:
                    beat = contracts.AgentHeartbeat(agent_id=agent_id, hostname="logs-test", sent_at=datetime.now(UTC))
                    await nc.publish(Subjects.agent_heartbeat(agent_id), contracts.encode(beat))
                await asyncio.sleep(0.3)

        tasks.append(asyncio.create_task(beat_forever()))

        async def registered():
            return await pool.fetchval(
                "SELECT count(*) FROM agents WHERE id = ANY($1::text[]) AND offline_since IS NULL", list(agent_ids)
            ) == len(agent_ids)

        await eventually(registered)

    yield start
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def relay_warnings(caplog, job_id: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "services.scheduler.logs.relay" and job_id in r.getMessage()
    ]


async def test_an_agent_cannot_ship_as_another_nor_write_a_log_itself(
    scheduler, nats_server, services_bus, pool, people, online, tmp_path
):
    _, js = services_bus
    owner_errors: list[str] = []
    intruder_errors: list[str] = []
    owner = await connect_as(nats_server, "logs-owner", owner_errors)
    intruder = await connect_as(nats_server, "logs-intruder", intruder_errors)
    await online("logs-owner", "logs-intruder")
    job_id = await job_on(pool, people["fleet-owner"][0], tmp_path, "logs-owner", attempt=1)
    forged = contracts.encode(
        contracts.LogBatch(
            job_id=job_id,
            attempt=1,
            lines=(contracts.LogLine(seq=1, stream="stdout", at=datetime.now(UTC), text="forged"),),
        )
    )
    try:
        for subject in (Subjects.job_logs("logs-owner", job_id), Subjects.logs(job_id)):
            with pytest.raises(nats.errors.TimeoutError):  # JetStream never sees it, so never acknowledges it
                await intruder.jetstream().publish(subject, forged, timeout=1)
            await intruder.publish(subject, forged)
        await intruder.flush()
        for subject in (Subjects.job_logs("logs-owner", job_id), Subjects.logs(job_id)):
            refused = f'publish to "{subject}"'
            await eventually(
                lambda refused=refused: _async(
                    sum(refused in e and "permissions violation" in e for e in intruder_errors) == 2
                )
            )
        with pytest.raises(nats.errors.TimeoutError):  # the job's own agent may not skip the relay either
            await owner.jetstream().publish(Subjects.logs(job_id), forged, timeout=1)
        await eventually(lambda: _async(any(f'publish to "{Subjects.logs(job_id)}"' in e for e in owner_errors)))

        await ship(owner.jetstream(), "logs-owner", job_id, 1, ["honest 1", "honest 2"], tmp_path / "owner.log")
        await until_relayed(js)
        assert await stored_lines(js, job_id) == [(1, 1, "honest 1"), (1, 2, "honest 2")]
        assert owner.is_connected and intruder.is_connected, "a refused publish costs no agent its connection"
    finally:
        await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE id = $1", job_id)
        await owner.close()
        await intruder.close()


async def test_only_the_jobs_agent_for_its_attempt_gets_lines_in_and_they_arrive_in_order(
    scheduler, nats_server, services_bus, pool, people, online, tmp_path, caplog
):
    _, js = services_bus
    a = await connect_as(nats_server, "logs-a", [])
    b = await connect_as(nats_server, "logs-b", [])
    await online("logs-a", "logs-b")
    job_id = await job_on(pool, people["fleet-owner"][0], tmp_path, "logs-a", attempt=2)
    caplog.set_level(logging.WARNING, logger="services.scheduler.logs.relay")
    try:
        # On their own subjects NATS takes them all; the relay copies only the job's agent's current attempt.
        await ship(b.jetstream(), "logs-b", job_id, 2, ["from b"] * 3, tmp_path / "b.log")
        await ship(a.jetstream(), "logs-a", job_id, 1, ["attempt 1"] * 3, tmp_path / "a1.log")
        await ship(a.jetstream(), "logs-a", job_id, 0, ["no attempt"] * 3, tmp_path / "a0.log")
        await ship(a.jetstream(), "logs-a", job_id, 2, [f"line {i}" for i in range(1, 1201)], tmp_path / "a2.log")
        await ship(b.jetstream(), "logs-b", job_id, 2, ["from b again"], tmp_path / "b.log", seq=1200)
        await until_relayed(js)

        assert await stored_lines(js, job_id) == [(2, i, f"line {i}") for i in range(1, 1201)]
        warnings = relay_warnings(caplog, job_id)
        assert any("from agent logs-b" in w and "not on this agent" in w for w in warnings), warnings
        assert any("from agent logs-a" in w and "attempt" in w for w in warnings), warnings
    finally:
        await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE id = $1", job_id)
        await a.close()
        await b.close()


async def test_a_requeued_job_takes_no_more_lines_from_its_old_run_and_the_next_runs_lines_follow(
    scheduler, nats_server, services_bus, pool, people, online, tmp_path
):
    nc, js = services_bus
    a = await connect_as(nats_server, "logs-old", [])
    b = await connect_as(nats_server, "logs-new", [])
    await online("logs-old", "logs-new")
    owner_id = people["fleet-owner"][0]
    job_id = await job_on(pool, owner_id, tmp_path, "logs-old", attempt=1)
    relay = scheduler.app.state.context.relay
    try:
        await ship(a.jetstream(), "logs-old", job_id, 1, [f"old {i}" for i in range(1, 6)], tmp_path / "a.log")
        await until_relayed(js)
        assert job_id in relay.gate._entries  # cached: the next batches cost no query

        # Re-queued (its agent was lost, say): the scheduler commits, then announces the change.
        await move(pool, job_id, None, 1, "pending")
        await publish_change(nc, JobChange(id=job_id, owner_id=owner_id, state="pending"))
        await eventually(lambda: _async(job_id not in relay.gate._entries))
        await ship(a.jetstream(), "logs-old", job_id, 1, ["old 6, after the re-queue"], tmp_path / "a.log", seq=5)
        await until_relayed(js)

        # Dispatched to another agent as attempt 2; its first lines may come before the announcement does.
        await move(pool, job_id, "logs-new", 2, "dispatched")
        await ship(b.jetstream(), "logs-new", job_id, 2, [f"new {i}" for i in range(1, 5)], tmp_path / "b.log")
        await ship(a.jetstream(), "logs-old", job_id, 1, ["old 7, still running"], tmp_path / "a.log", seq=6)
        await until_relayed(js)

        assert await stored_lines(js, job_id) == [(1, i, f"old {i}") for i in range(1, 6)] + [
            (2, i, f"new {i}") for i in range(1, 5)
        ]
    finally:
        await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE id = $1", job_id)
        await a.close()
        await b.close()


async def _async(value):
    return value
