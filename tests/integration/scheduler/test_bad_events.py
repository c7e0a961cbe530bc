"""No job strands (issue 14, item 1): the scheduler in-process, real NATS and Postgres.

An event the scheduler cannot read or store is kept in DEAD_LETTERS with its raw bytes, counted on /metrics, and its
job fails with `bad_event` (its agent is told to stop); text with NUL bytes is stored without them; a cancel the
job's agent never confirms ends the job after LLMCT_CANCEL_GRACE_S (2 s here)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from datetime import UTC, datetime

import msgspec
import nats
import pytest

from services.common import contracts
from services.common.consumers import HEADER_CONSUMER, HEADER_ERROR, HEADER_SUBJECT
from services.common.contracts import Subjects
from tests.helpers import eventually

from .helpers import finished, job_on

pytestmark = pytest.mark.integration

AGENT = "bad-events-agent"


@pytest.fixture(scope="module")
async def bus(scheduler, nats_server):
    """The services' connection, beating for the agent: the sweep leaves the jobs of a live agent alone."""
    nc = await nats.connect(nats_server.url)

    async def beat_forever():
        while True:  # no GPUs, no CPU slots: nothing is placed on it
            beat = contracts.AgentHeartbeat(agent_id=AGENT, hostname="bad-events", sent_at=datetime.now(UTC))
            await nc.publish(Subjects.agent_heartbeat(AGENT), contracts.encode(beat))
            await asyncio.sleep(0.3)

    beating = asyncio.create_task(beat_forever())
    yield nc, nc.jetstream()
    beating.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await beating
    await nc.close()


async def _ended(pool, job_id: str):
    row = await pool.fetchrow("SELECT state, reason, message, metrics FROM jobs WHERE id = $1", job_id)
    return row if row["state"] != "running" else None


async def _dead_letter_of(js, job_id: str):
    """The newest message DEAD_LETTERS keeps from the scheduler's job-event consumer, when it is about `job_id`."""
    try:
        kept = await js.get_last_msg("DEAD_LETTERS", Subjects.dead_letter(contracts.JOB_EVENTS_CONSUMER))
    except nats.js.errors.NotFoundError:
        return None
    return kept if kept.headers and kept.headers.get(HEADER_SUBJECT, "").endswith(job_id) else None


async def test_a_diverged_runs_nan_metric_fails_the_job_and_is_kept(bus, scheduler, pool, people, tmp_path):
    """The exact bytes an agent sent before the fix: NaN encodes as null, which dict[str, float] refuses."""
    nc, js = bus
    owner_id, _ = people["fleet-owner"]
    job_id = await job_on(pool, owner_id, tmp_path, AGENT, attempt=1)
    cancels = await nc.subscribe(Subjects.job_cancel(job_id))
    await nc.flush()  # the server has the subscription before anything is published to it
    event = msgspec.structs.replace(finished(job_id, AGENT, 1), metrics={"train_loss": math.nan})
    raw = contracts.encode(event)
    assert b'"train_loss":null' in raw, "msgspec writes NaN as null: the scheduler cannot decode it"
    await js.publish(Subjects.job_status(AGENT, job_id), raw)

    ended = await eventually(lambda: _ended(pool, job_id), timeout=15)
    assert (ended["state"], ended["reason"]) == ("failed", "bad_event")
    assert "DEAD_LETTERS" in ended["message"] and "undecodable" in ended["message"]
    kept = await eventually(lambda: _dead_letter_of(js, job_id))
    assert kept.data == raw, "kept as it came"
    assert kept.headers[HEADER_SUBJECT] == Subjects.job_status(AGENT, job_id)
    assert kept.headers[HEADER_CONSUMER] == contracts.JOB_EVENTS_CONSUMER and "null" in kept.headers[HEADER_ERROR]
    stop = await cancels.next_msg(timeout=5)
    assert isinstance(contracts.decode(stop.data), contracts.JobCancelRequested), "its agent is told to stop it"
    metrics = (await scheduler.get("/metrics")).text
    counted = [line for line in metrics.splitlines() if line.startswith("llmct_dead_letters_total{")]
    assert any(f'consumer="{contracts.JOB_EVENTS_CONSUMER}"' in line for line in counted), counted


async def test_nul_bytes_in_the_last_lines_are_stored_without_them(bus, pool, people, tmp_path):
    _, js = bus
    owner_id, _ = people["fleet-owner"]
    job_id = await job_on(pool, owner_id, tmp_path, AGENT, attempt=1)
    event = msgspec.structs.replace(
        finished(job_id, AGENT, 1, state="failed"),
        reason="exit_code",
        message="the engine exited\x00 with code 1",
        last_lines=("Traceback\x00\x00", "RuntimeError: boom\x00"),
    )
    await js.publish(Subjects.job_status(AGENT, job_id), contracts.encode(event))

    ended = await eventually(lambda: _ended(pool, job_id), timeout=15)
    assert (ended["state"], ended["reason"]) == ("failed", "exit_code")
    assert ended["message"] == "the engine exited with code 1\n--- last log lines ---\nTraceback\nRuntimeError: boom"


async def test_an_event_postgres_refuses_is_kept_and_fails_the_job(bus, pool, people, tmp_path):
    """A metric named with a NUL byte decodes, but jsonb refuses it: applying it can never work."""
    _, js = bus
    owner_id, _ = people["fleet-owner"]
    job_id = await job_on(pool, owner_id, tmp_path, AGENT, attempt=1)
    event = msgspec.structs.replace(finished(job_id, AGENT, 1), metrics={"loss\x00": 1.0})
    await js.publish(Subjects.job_status(AGENT, job_id), contracts.encode(event))

    ended = await eventually(lambda: _ended(pool, job_id), timeout=15)
    assert (ended["state"], ended["reason"]) == ("failed", "bad_event")
    assert "could not be applied" in ended["message"]
    kept = await eventually(lambda: _dead_letter_of(js, job_id))
    assert kept.data == contracts.encode(event)


async def test_a_cancel_the_agent_never_confirms_ends_the_job_after_the_grace(bus, scheduler, pool, people, tmp_path):
    """Seen on a live stack: an agent back without the job answered no cancel; cancel said 202 and changed nothing."""
    nc, _ = bus
    owner_id, owner = people["fleet-owner"]
    job_id = await job_on(pool, owner_id, tmp_path, AGENT, attempt=1)
    cancels = await nc.subscribe(Subjects.job_cancel(job_id))
    await nc.flush()  # the server has the subscription before anything is published to it
    r = await scheduler.post(f"/api/jobs/{job_id}/cancel", headers=owner)
    assert (r.status_code, r.json()["state"]) == (202, "cancelling")
    await cancels.next_msg(timeout=5)  # the agent is asked (and never answers)
    assert (await pool.fetchval("SELECT state FROM jobs WHERE id = $1", job_id)) == "running"

    ended = await eventually(lambda: _ended(pool, job_id), timeout=30)  # the sweep runs every 10 s
    assert (ended["state"], ended["reason"]) == ("cancelled", "cancelled")
    assert "did not confirm the stop within 2 s" in ended["message"]
    assert isinstance(contracts.decode((await cancels.next_msg(timeout=5)).data), contracts.JobCancelRequested)
    r = await scheduler.post(f"/api/jobs/{job_id}/retry", headers=owner)
    assert r.status_code == 202, "a cancelled job can run again: nothing left for database surgery"
    await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE id = $1", job_id)
