"""What a fine-tuning job trained and measured (issue 18): the scheduler in-process, real NATS and Postgres, the
datasets service answering over NATS. The agent's progress carries the tokens seen; once the job succeeded,
`trained_tokens` is what the engine counted and `result_files` names one CSV of its metrics, a file of its owner
made by the datasets service (when the job succeeds, or on the next read when that did not happen)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from datetime import UTC, datetime

import msgspec
import nats
import pytest

from services.common import contracts
from services.common.contracts import Subjects
from services.common.security import new_id
from services.scheduler.jobs import store as jobs_store
from services.scheduler.openai import store as ft_store
from tests.helpers import eventually

from .helpers import finished, job_on

pytestmark = pytest.mark.integration

AGENT = "ft-results-agent"
JOBS = "/v1/fine_tuning/jobs"
HEADER = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]


@pytest.fixture(scope="module")
async def bus(scheduler, nats_server):
    """The services' connection, beating for the agent: the sweep leaves the jobs of a live agent alone."""
    nc = await nats.connect(nats_server.url)

    async def beat_forever():
        while True:
            beat = contracts.AgentHeartbeat(agent_id=AGENT, hostname="ft-results", sent_at=datetime.now(UTC))
            await nc.publish(Subjects.agent_heartbeat(AGENT), contracts.encode(beat))
            await asyncio.sleep(0.3)

    beating = asyncio.create_task(beat_forever())
    yield nc.jetstream()
    beating.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await beating
    await nc.close()


async def ftjob_on(pool, owner_id: str, tmp_path) -> tuple[str, str]:
    """A fine-tuning job whose platform job runs on AGENT (attempt 1): (ftjob id, job id)."""
    job_id = await job_on(pool, owner_id, tmp_path, AGENT, attempt=1)
    ftjob_id = "ftjob-" + new_id("x")[-24:]
    values = {
        "model": "tiny",
        "training_file": "file-x",
        "validation_file": None,
        "suffix": None,
        "metadata": None,
        "seed": 1,
        "integrations": [],
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
    }
    async with pool.acquire() as conn:
        await ft_store.insert(conn, ftjob_id=ftjob_id, job_id=job_id, owner_id=owner_id, values=values)
    return ftjob_id, job_id


def progressed(job_id: str, step: int, loss: float | None, tokens: int, eval_loss: float | None = None):
    return contracts.JobProgressed(
        job_id=job_id,
        step=step,
        total_steps=3,
        loss=loss,
        eval_loss=eval_loss,
        tokens_seen=tokens,
        at=datetime.now(UTC),
        attempt=1,
    )


def rows_of(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode())))


async def test_a_succeeded_job_has_its_tokens_and_one_results_file(bus, scheduler, pool, people, tmp_path):
    js = bus
    (owner_id, owner), (_, other) = people["fleet-owner"], people["fleet-other"]
    ftjob_id, job_id = await ftjob_on(pool, owner_id, tmp_path)
    for event in (
        progressed(job_id, 1, 2.5, 40),
        progressed(job_id, 2, 2.25, 84),
        progressed(job_id, 2, None, 84, eval_loss=1.75),  # a validation pass at the step already logged
        progressed(job_id, 3, 2.0, 120),
    ):
        await js.publish(Subjects.job_status(AGENT, job_id), contracts.encode(event))

    async def counted():
        found = (await scheduler.get(f"/api/jobs/{job_id}", headers=owner)).json()
        return found if len(found["progress_series"]) == 3 and found["progress"]["step"] == 3 else None

    detail = await eventually(counted, timeout=15)
    assert [p["tokens_seen"] for p in detail["progress_series"]] == [40, 84, 120]
    assert detail["progress"]["tokens_seen"] == 120 and detail["trained_tokens"] == 120
    assert detail["fine_tuning"]["id"] == ftjob_id and detail["fine_tuning"]["status"] == "running"
    assert detail["fine_tuning"]["trained_tokens"] is None and detail["fine_tuning"]["method"] == "supervised"
    running = (await scheduler.get(f"{JOBS}/{ftjob_id}", headers=owner)).json()
    assert running["trained_tokens"] is None and running["result_files"] == []  # null until it succeeds, as OpenAI

    done = msgspec.structs.replace(finished(job_id, AGENT, 1), metrics={"num_input_tokens_seen": 120.0})
    await js.publish(Subjects.job_status(AGENT, job_id), contracts.encode(done))

    async def made():  # when it succeeds, without anyone reading the job
        return await pool.fetchval("SELECT result_file FROM fine_tuning_jobs WHERE id = $1", ftjob_id)

    file_id = await eventually(made, timeout=15)
    job = (await scheduler.get(f"{JOBS}/{ftjob_id}", headers=owner)).json()
    assert job["status"] == "succeeded" and job["trained_tokens"] == 120 and job["result_files"] == [file_id]
    listed = (await scheduler.get(JOBS, headers=owner)).json()["data"]
    assert next(j for j in listed if j["id"] == ftjob_id)["result_files"] == [file_id]

    stored = await pool.fetchrow("SELECT owner_id, purpose, content FROM openai_files WHERE id = $1", file_id)
    assert (stored["owner_id"], stored["purpose"]) == (owner_id, "fine-tune-results")
    assert rows_of(stored["content"]) == [
        HEADER,
        ["1", "2.5", "", "", ""],
        ["2", "2.25", "", "1.75", ""],
        ["3", "2.0", "", "", ""],
    ]
    assert (await scheduler.get(f"{JOBS}/{ftjob_id}", headers=other)).status_code == 404

    # The job page shows the same beside our job.
    ours = (await scheduler.get(f"/api/jobs/{job_id}", headers=owner)).json()
    assert ours["trained_tokens"] == 120 and ours["fine_tuning"]["result_files"] == [file_id]
    assert (
        ours["fine_tuning"]["fine_tuned_model"] == job["fine_tuned_model"] and ours["fine_tuning"]["checkpoints"] == []
    )
    assert ours["fine_tuning"]["hyperparameters"] == {"n_epochs": 1}


async def test_a_results_file_missed_at_success_is_made_on_read_once(bus, scheduler, pool, people, tmp_path):
    owner_id, owner = people["fleet-owner"]
    ftjob_id, job_id = await ftjob_on(pool, owner_id, tmp_path)
    async with pool.acquire() as conn:
        for step in (1, 2):
            point = {"step": step, "total_steps": 2, "loss": 1.0 / step, "tokens_seen": 50 * step}
            await jobs_store.insert_progress(conn, job_id, point)
    # Succeeded while no results file could be made (the scheduler restarted mid-way): no metrics, no file.
    await pool.execute("UPDATE jobs SET state = 'succeeded', finished_at = now() WHERE id = $1", job_id)

    first = (await scheduler.get(f"{JOBS}/{ftjob_id}", headers=owner)).json()
    assert first["trained_tokens"] == 100 and len(first["result_files"]) == 1  # the progress's count
    again = (await scheduler.get(f"{JOBS}/{ftjob_id}", headers=owner)).json()
    assert again["result_files"] == first["result_files"]
    assert await pool.fetchval("SELECT count(*) FROM openai_files WHERE source_job = $1", ftjob_id) == 1

    # The owner deleted the file: the job still names it (as OpenAI's does), and none is made again.
    await pool.execute("DELETE FROM openai_files WHERE id = $1", first["result_files"][0])
    after = (await scheduler.get(f"{JOBS}/{ftjob_id}", headers=owner)).json()
    assert after["result_files"] == first["result_files"]
    assert await pool.fetchval("SELECT count(*) FROM openai_files WHERE source_job = $1", ftjob_id) == 0
