"""A job's secrets reach its engine and nothing else (services/agent/jobsecrets.py, services/agent/logs.py): the
scheduler in-process, a real agent process with its own NATS user (process runtime), and a stand-in engine that
writes what it was given to a file and prints it. The train stage gets the value, a later stage does not; every
place the log goes (the agent's file, the LOGS stream viewers read, a failed job's last lines) shows [redacted]; a
secret the owner has not set fails the job `secrets_unavailable`, saying which and how to set it."""

from __future__ import annotations

import asyncio
import stat
from datetime import UTC, datetime

import pytest

from services.common import contracts
from services.common.contracts import Subjects
from tests.helpers import eventually, unique

from .helpers import job_on, stored_lines, until_relayed

pytestmark = pytest.mark.integration

AGENT = "secrets-env-agent"


@pytest.fixture(scope="module")
def telling_engine(tmp_path_factory):
    """A stand-in engine: appends the WANDB_API_KEY it got (or `none`) to seen.txt, prints it in a sentence, and
    fails when its config says `fail`."""
    folder = tmp_path_factory.mktemp("telling-engine")
    seen = folder / "seen.txt"
    script = folder / "llamafactory-cli"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "${{WANDB_API_KEY:-none}}" >> {seen}\n'
        'echo "wandb: logging in with ${WANDB_API_KEY:-none} (stage $1)"\n'
        'echo "twice: ${WANDB_API_KEY:-none}${WANDB_API_KEY:-none}" >&2\n'
        'if grep -q fail "$2"; then exit 3; fi\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


async def run(bus, pool, settings, owner_id: str, tmp_path, stages: list[tuple[str, str]]) -> contracts.JobFinished:
    """A job of `owner_id` given WANDB_API_KEY, dispatched to the agent as the scheduler would; its JobFinished."""
    job_id = await job_on(pool, owner_id, tmp_path, AGENT, 1, "dispatched")
    await pool.execute("UPDATE jobs SET secret_names = '{WANDB_API_KEY}' WHERE id = $1", job_id)
    finished = asyncio.get_running_loop().create_future()

    async def on_event(msg):
        event = contracts.decode(msg.data)
        if isinstance(event, contracts.JobFinished) and not finished.done():
            finished.set_result(event)

    sub = await bus.subscribe(Subjects.job_status_of(job_id), cb=on_event)
    order = contracts.JobDispatched(
        job_id=job_id,
        kind="train",
        stages=tuple(
            contracts.EngineStage(name=name, command=("llamafactory-cli", name), config_yaml=config)
            for name, config in stages
        ),
        output_dir=str(settings.storage.output / job_id),
        dispatched_at=datetime.now(UTC),
        attempt=1,
        secrets=("WANDB_API_KEY",),
    )
    await bus.jetstream().publish(Subjects.job_dispatch(AGENT), contracts.encode(order))
    try:
        return await asyncio.wait_for(finished, 60)
    finally:
        await sub.unsubscribe()


async def ended(pool, job_id: str):
    """The job's row once the scheduler applied its end."""
    row = await pool.fetchrow("SELECT state, reason FROM jobs WHERE id = $1", job_id)
    return row if row["state"] == "failed" else None


async def test_the_train_stage_gets_the_secret_and_no_log_shows_it(
    scheduler, start_agent, telling_engine, people, pool, bus, settings, tmp_path
):
    owner_id, owner = people["fleet-owner"]
    secret = unique("wandb-key-for-engine")
    assert (await scheduler.put("/api/secrets/wandb_api_key", json={"value": secret}, headers=owner)).is_success
    start_agent(AGENT, LLMCT_ENGINE_BIN=str(telling_engine), LLMCT_CPU_SLOTS="1")
    seen = telling_engine / "seen.txt"

    done = await run(bus, pool, settings, owner_id, tmp_path, [("train", "a: 1\n"), ("merge", "a: 1\n")])
    assert done.state == "succeeded", done
    assert seen.read_text().splitlines() == [secret, "none"], "the train stage only"
    log = (settings.storage.logs / f"{done.job_id}.log").read_text()
    assert secret not in log and "logging in with [redacted] (stage train)" in log, log
    assert "twice: [redacted][redacted]" in log
    js = bus.jetstream()
    await until_relayed(js)
    relayed = [text for _, _, text in await stored_lines(js, done.job_id)]
    assert any("[redacted]" in text for text in relayed) and not any(secret in text for text in relayed)

    failed = await run(bus, pool, settings, owner_id, tmp_path, [("train", "fail: 1\n")])
    assert failed.state == "failed" and failed.last_lines, failed
    assert not any(secret in line for line in failed.last_lines), failed.last_lines
    assert (await eventually(lambda: ended(pool, failed.job_id)))["reason"] == "exit_code"

    assert (await scheduler.delete("/api/secrets/wandb_api_key", headers=owner)).status_code == 204
    seen.write_text("")
    missing = await run(bus, pool, settings, owner_id, tmp_path, [("train", "a: 1\n")])
    assert missing.state == "failed" and missing.reason == "secrets_unavailable", missing
    assert "W&B API key not set: PUT /api/secrets/wandb_api_key" in (missing.message or "")
    assert seen.read_text() == "", "no engine started"
    assert (await eventually(lambda: ended(pool, missing.job_id)))["reason"] == "secrets_unavailable"
