"""A job's detail in `objects` storage mode (issue 15): the agent's input fetch shows there while it goes on (bytes of
all the job's inputs, the input it is on), and a failed job's "resume from step N" is its newest whole checkpoint in
the store, where the control plane's folder has none. The scheduler in-process; the agent's cache and its event
publisher as the agent runs them, on the agent's own NATS user."""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import UTC, datetime

import pytest

from services.agent.cache import Cache
from services.agent.events import FetchReport, JobEvents
from services.common import contracts, objects
from services.common.contracts import Buckets, Subjects
from tests.helpers import eventually, unique
from tests.integration.agent.helpers import Notes, stored_input

from .helpers import connect_as, job_on

pytestmark = pytest.mark.integration

MB = 1024 * 1024
AGENT = unique("objects-detail-agent")
CONTROL_BASE = "/srv/control-plane/cloud-llm"  # the job's paths: nothing of it exists here


@pytest.fixture(scope="module")
async def agent(scheduler, nats_server, pool):
    """The agent's own connection, beating with the jobs in `running` listed (a silent agent's jobs are
    re-queued): (its JetStream context, running)."""
    nc = await connect_as(nats_server, AGENT, [])
    running: list[str] = []

    async def beat_forever() -> None:
        while True:
            beat = contracts.AgentHeartbeat(
                agent_id=AGENT, hostname="objects-detail", sent_at=datetime.now(UTC), running_jobs=tuple(running)
            )
            await nc.publish(Subjects.agent_heartbeat(AGENT), contracts.encode(beat))
            await asyncio.sleep(0.3)

    beating = asyncio.create_task(beat_forever())

    async def online():
        return await pool.fetchval("SELECT offline_since IS NULL FROM agents WHERE id = $1", AGENT)

    await eventually(online)
    yield nc.jetstream(), running
    beating.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await beating
    await nc.close()


@pytest.fixture
def store_js(js):
    """The services' connection, every bucket there (what the control plane stores inputs with)."""
    return js


async def fetch_of(scheduler, owner: dict, job_id: str) -> dict | None:
    r = await scheduler.get(f"/api/jobs/{job_id}", headers=owner)
    assert r.status_code == 200, r.text
    return r.json()["fetch"]


async def test_the_input_fetch_shows_on_the_jobs_detail_while_it_goes_on(
    scheduler, agent, store_js, pool, people, tmp_path
):
    js, running = agent
    owner_id, owner = people["fleet-owner"]
    job_id = await job_on(pool, owner_id, tmp_path, AGENT, attempt=2)
    running.append(job_id)
    small = await stored_input(store_js, tmp_path, "data/u/small.jsonl", size=MB)
    big = await stored_input(store_js, tmp_path, "data/u/big.jsonl", size=40 * MB)
    total = small.size + big.size
    cache = Cache(js, tmp_path / "cache", 1024 * MB, progress_every_s=0)
    report = FetchReport(JobEvents(js, AGENT), job_id, attempt=2, every_s=0)
    midway: list[dict] = []

    async def held(name: str, done: int, total: int) -> None:
        """The agent's report; the fetch waits (its next batch untaken) until the detail shows the first report
        midway through the big input: a fetch of any speed is seen while it goes on."""
        await report(name, done, total)
        if name == "big.jsonl" and small.size < done < total and not midway:

            async def shown():
                found = await fetch_of(scheduler, owner, job_id)
                return found if found and found["done_bytes"] == done else None

            midway.append(await eventually(shown, timeout=15))

    try:
        await cache.bring(job_id, [small, big], tmp_path / "base", Notes(), held)
        assert midway, "the big input came in more than one batch"
        assert midway[0]["input"] == "big.jsonl" and midway[0]["total_bytes"] == total

        async def whole():
            found = await fetch_of(scheduler, owner, job_id)
            return found if found and found["done_bytes"] == total else None

        assert (await eventually(whole, timeout=15))["input"] == "big.jsonl"

        # A name Postgres would refuse in jsonb (a NUL) is kept without it: the report fails no job.
        await FetchReport(JobEvents(js, AGENT), job_id, attempt=2)("odd\x00name.jsonl", 0, 10)

        async def renamed():
            found = await fetch_of(scheduler, owner, job_id)
            return found if found and found["input"] == "oddname.jsonl" else None

        await eventually(renamed, timeout=15)
        assert await pool.fetchval("SELECT state FROM jobs WHERE id = $1", job_id) == "running"

        # The next attempt (another agent, say) has fetched nothing yet: the old attempt's report is not its own.
        await pool.execute("UPDATE jobs SET attempt = 3 WHERE id = $1", job_id)
        assert await fetch_of(scheduler, owner, job_id) is None
    finally:
        running.remove(job_id)
        await cache.release(job_id)
        await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE id = $1", job_id)


async def put_checkpoint(store_js, tmp_path, job_id: str, checkpoint: str, *, whole: bool = True) -> None:
    """A checkpoint's files in CHECKPOINTS as the agent puts them (trainer_state.json last: without it, unfinished)."""
    files = ["adapter_model.safetensors"] + (["trainer_state.json"] if whole else [])
    for name in files:
        source = tmp_path / f"part-{os.urandom(4).hex()}"
        source.write_bytes(os.urandom(1000))
        name = Buckets.checkpoint_object(job_id, checkpoint, name)
        await objects.put_file(store_js, Buckets.CHECKPOINTS, name, source)


async def test_resume_from_step_is_the_newest_whole_checkpoint_in_the_store(
    scheduler, store_js, pool, people, tmp_path
):
    owner_id, owner = people["fleet-owner"]
    job_id = await job_on(pool, owner_id, tmp_path, AGENT, attempt=1, state="failed")
    await pool.execute(
        "UPDATE jobs SET output_dir = $2, fetches = $3 WHERE id = $1",
        job_id,
        f"{CONTROL_BASE}/output/{job_id}",
        {"inputs": [], "files": [], "base": CONTROL_BASE},  # rendered in objects mode
    )
    r = await scheduler.get(f"/api/jobs/{job_id}", headers=owner)
    assert r.json()["resume_step"] is None, "no checkpoint stored yet"

    await put_checkpoint(store_js, tmp_path, job_id, "checkpoint-20")
    await put_checkpoint(store_js, tmp_path, job_id, "checkpoint-100")
    await put_checkpoint(store_js, tmp_path, job_id, "checkpoint-120", whole=False)  # cut off mid-upload
    await put_checkpoint(store_js, tmp_path, f"{job_id}x", "checkpoint-300")  # another job whose id starts alike
    r = await scheduler.get(f"/api/jobs/{job_id}", headers=owner)
    assert r.status_code == 200, r.text
    assert r.json()["resume_step"] == 100
    assert not os.path.exists(CONTROL_BASE), "found in the store, not in a folder"
