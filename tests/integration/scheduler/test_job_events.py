"""Job events count only from the job's agent, for the attempt it runs (services/scheduler/jobs/events.py): the
scheduler in-process, real NATS and Postgres. Published here on the services' user, which NATS lets publish anything:
an event naming another agent, an old attempt or the wrong job is dropped (and acked), the right agent's is applied.
That an agent cannot even publish as another is test_nats_permissions.py's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import nats
import pytest

from services.common import contracts
from services.common.contracts import Subjects
from tests.helpers import eventually

from .helpers import finished, job_on, move, progressed, started, steps, until_progress

pytestmark = pytest.mark.integration

A, B = "events-agent-a", "events-agent-b"


@pytest.fixture(scope="module")
async def bus(scheduler, nats_server, pool):
    """The services' connection, beating for agents A and B: the sweep re-queues the jobs of a silent agent."""
    nc = await nats.connect(nats_server.url)
    beating = asyncio.create_task(_beat_forever(nc))

    async def online():
        return (
            await pool.fetchval(
                "SELECT count(*) FROM agents WHERE id = ANY($1::text[]) AND offline_since IS NULL", [A, B]
            )
            == 2
        )

    await eventually(online)
    yield nc, nc.jetstream()
    beating.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await beating
    await nc.close()


async def _beat_forever(nc) -> None:
    while True:  # no GPUs, no CPU slots: nothing is placed on these agents
        for agent_id in (A, B):
            beat = contracts.AgentHeartbeat(agent_id=agent_id, hostname="events-test", sent_at=datetime.now(UTC))
            await nc.publish(Subjects.agent_heartbeat(agent_id), contracts.encode(beat))
        await asyncio.sleep(0.3)


async def send(js, agent_id: str, event: contracts.Message, job_id: str | None = None) -> int:
    """Publish `event` on job.status.<agent_id>.<job_id> (the event's job unless told); the stream sequence."""
    ack = await js.publish(Subjects.job_status(agent_id, job_id or event.job_id), contracts.encode(event))
    return ack.seq


async def row(pool, job_id: str):
    return await pool.fetchrow(
        "SELECT state, agent_id, attempt, progress, reason, metrics FROM jobs WHERE id = $1", job_id
    )


async def history(pool, job_id: str) -> list[tuple[str, str]]:
    return [
        (r["state"], r["reason"])
        for r in await pool.fetch("SELECT state, reason FROM job_events WHERE job_id = $1 ORDER BY id", job_id)
    ]


async def all_acked(js, seq: int) -> None:
    """The scheduler's consumer acked everything up to stream sequence `seq`: nothing of it comes back."""

    async def acked():
        info = await js.consumer_info("JOB_EVENTS", contracts.JOB_EVENTS_CONSUMER)
        return info.ack_floor.stream_seq >= seq and info.num_ack_pending == 0

    await eventually(acked, timeout=15)


async def test_only_the_jobs_agent_moves_it_whatever_the_others_claim(bus, pool, people, tmp_path, caplog):
    _, js = bus
    owner_id, _ = people["fleet-owner"]
    job_id = await job_on(pool, owner_id, tmp_path, A, attempt=1)
    other_job = await job_on(pool, owner_id, tmp_path, B, attempt=1)
    caplog.set_level(logging.WARNING, logger="services.scheduler.jobs.events")
    try:
        await send(js, B, finished(job_id, B, 1))  # another agent, honest about who it is
        await send(js, B, finished(job_id, A, 1))  # another agent's subject, the job's agent in the body
        await send(js, A, finished(job_id, B, 1))  # the job's agent on the subject, another in the body
        await send(js, B, progressed(job_id, 5, 1))
        await send(js, A, finished(job_id, A, 1), job_id=other_job)  # a subject naming another job
        await send(js, A, finished(job_id, A, 2))  # an attempt the job never had
        await send(js, A, finished(job_id, A, 0))  # no attempt at all (an agent from before attempts)
        last = await send(js, A, progressed(job_id, 1, 1))  # the right one, last
        await until_progress(pool, job_id, 1)

        assert (await row(pool, job_id))["state"] == "running", "no forged finish was applied"
        assert await steps(pool, job_id) == [1], "the other agent's point was not stored"
        assert (await row(pool, job_id))["progress"]["step"] == 1
        assert await history(pool, job_id) == [("pending", "submitted")], "nothing added to the job's history"
        assert (await row(pool, other_job))["state"] == "running", "the other job is untouched too"
        await all_acked(js, last)
        dropped = [r.getMessage() for r in caplog.records if r.name == "services.scheduler.jobs.events"]
        assert sum(f"for job {job_id}" in m for m in dropped) == 7, dropped
        assert any(f"from agent {B} for job {job_id}" in m and "not on this agent" in m for m in dropped)
        assert any("claims to come from agent" in m for m in dropped)
        assert any("attempt 2" in m for m in dropped)

        last = await send(js, A, finished(job_id, A, 1))
        finished_row = await eventually(lambda: _terminal(pool, job_id))
        assert (finished_row["state"], finished_row["agent_id"]) == ("succeeded", A)
        await all_acked(js, last)
    finally:
        await pool.execute(
            "UPDATE jobs SET state = 'cancelled' WHERE id = ANY($1::text[]) AND state <> 'succeeded'",
            [job_id, other_job],
        )


async def test_a_requeued_or_redispatched_job_ignores_what_its_old_attempt_still_sends(bus, pool, people, tmp_path):
    _, js = bus
    owner_id, _ = people["fleet-owner"]
    job_id = await job_on(pool, owner_id, tmp_path, A, attempt=1)
    try:
        await send(js, A, progressed(job_id, 1, 1))
        await until_progress(pool, job_id, 1)

        await move(pool, job_id, None, 1, "pending")  # A went offline: re-queued, on no agent
        await send(js, A, progressed(job_id, 2, 1))
        await send(js, A, finished(job_id, A, 1, state="failed"))
        await move(pool, job_id, B, 2, "dispatched")  # the next dispatch: agent B, attempt 2
        await send(js, A, progressed(job_id, 3, 1))
        await send(js, A, started(job_id, A, 1))
        await send(js, A, finished(job_id, A, 1))
        await send(js, B, started(job_id, B, 1))  # the new agent, but the old attempt's number
        await send(js, B, started(job_id, B, 2))
        await send(js, B, progressed(job_id, 4, 2))
        await until_progress(pool, job_id, 4)
        now_row = await row(pool, job_id)
        assert (now_row["state"], now_row["agent_id"], now_row["attempt"]) == ("running", B, 2)
        assert await steps(pool, job_id) == [1, 4], "the old attempt's points were not stored"
        started_by = await pool.fetch("SELECT message FROM job_events WHERE job_id = $1 AND reason = 'started'", job_id)
        assert [r["message"] for r in started_by] == [f"process on {B}"]

        # Back on agent A as attempt 3 (its own earlier run is over): attempt 1's late events still count for nothing.
        await move(pool, job_id, A, 3, "dispatched")
        await send(js, A, started(job_id, A, 1))
        await send(js, A, progressed(job_id, 5, 1))
        last = await send(js, A, finished(job_id, A, 1))
        await all_acked(js, last)
        assert (await row(pool, job_id))["state"] == "dispatched"
        assert await steps(pool, job_id) == [1, 4]
        await send(js, A, started(job_id, A, 3))
        await send(js, A, finished(job_id, A, 3, state="failed"))
        done = await eventually(lambda: _terminal(pool, job_id))
        assert (done["state"], done["agent_id"], done["attempt"]) == ("failed", A, 3)
    finally:
        await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE id = $1 AND state <> 'failed'", job_id)


async def test_an_event_for_no_known_job_is_dropped_not_retried(bus):
    _, js = bus
    last = await send(js, A, progressed("job_never_existed", 1, 1))  # its point would break a foreign key
    await all_acked(js, last)


async def _terminal(pool, job_id: str):
    found = await row(pool, job_id)
    return found if found["state"] in contracts.TERMINAL_JOB_STATES else None
