"""The process runtime starts the engine with a clean environment (issue 14, item 3): a real agent process, started
with the platform's secrets in its own environment (DATABASE_URL, NATS credentials, LLMCT_SECRET_KEY, a hub token),
runs an engine that prints every variable it was given. None of the platform's secrets may be there; the hub token
only for a stage that downloads."""

from __future__ import annotations

import asyncio
import stat
from datetime import UTC, datetime

import pytest

from services.common import contracts
from services.common.bus import ensure_streams
from services.common.contracts import Subjects
from services.common.security import new_id

pytestmark = pytest.mark.integration

AGENT = "env-agent"
HUB_TOKEN = "hf_platform_token_x1"
PLATFORM_ONLY = ("DATABASE_URL", "NATS_URL", "NATS_USER", "NATS_PASSWORD", "NATS_CREDS", "LLMCT_SECRET_KEY")


@pytest.fixture(scope="module")
def printenv_engine(tmp_path_factory):
    """A stand-in engine that prints its whole environment, one variable a line."""
    folder = tmp_path_factory.mktemp("printenv-engine")
    script = folder / "llamafactory-cli"
    script.write_text("#!/bin/sh\nenv\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


async def run_job(bus, settings, hub: str | None) -> dict[str, str]:
    """Dispatch a one-stage job to the agent, wait for its end, and return the environment its engine printed."""
    job_id = new_id("job")
    finished = asyncio.get_running_loop().create_future()

    async def on_event(msg):
        event = contracts.decode(msg.data)
        if isinstance(event, contracts.JobFinished) and not finished.done():
            finished.set_result(event)

    sub = await bus.subscribe(Subjects.job_status_of(job_id), cb=on_event)
    stage = contracts.EngineStage(name="train", command=("llamafactory-cli", "train"), config_yaml="a: 1\n", hub=hub)
    order = contracts.JobDispatched(
        job_id=job_id,
        kind="train",
        stages=(stage,),
        output_dir=str(settings.storage.output / job_id),
        dispatched_at=datetime.now(UTC),
    )
    await bus.jetstream().publish(Subjects.job_dispatch(AGENT), contracts.encode(order))
    event = await asyncio.wait_for(finished, 60)
    await sub.unsubscribe()
    assert event.state == "succeeded", event
    lines = (settings.storage.logs / f"{job_id}.log").read_text().splitlines()
    printed = [line.split(" ", 3)[-1] if " " in line else line for line in lines]
    return dict(line.split("=", 1) for line in printed if "=" in line and line.split("=", 1)[0].isidentifier())


async def test_the_engine_gets_no_platform_secret(start_agent, printenv_engine, nats_server, bus, settings, tmp_path):
    await ensure_streams(bus.jetstream())
    creds = tmp_path / "agent.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\nsecret\n")
    start_agent(
        AGENT,
        LLMCT_ENGINE_BIN=str(printenv_engine),
        LLMCT_CPU_SLOTS="1",
        HF_TOKEN=HUB_TOKEN,
        NATS_CREDS=str(creds),
        PYTHONPATH="/platform/code",
    )
    local = await run_job(bus, settings, hub=None)
    assert "PATH" in local and "HF_HOME" in local, local  # the job's own settings are there
    secrets = {settings.database_url, settings.secret_key, nats_server.service_password, nats_server.agents[AGENT]}
    for name, value in local.items():
        assert name not in PLATFORM_ONLY and not name.startswith("LLMCT_"), name
        assert not any(secret and secret in value for secret in secrets), name
    assert "HF_TOKEN" not in local, "a stage that downloads nothing gets no hub token"
    # The platform's PYTHONPATH never: only the agent's pause hook beside the job's YAML (services/agent/pausing.py)
    assert local["PYTHONPATH"].endswith(".hook") and "/platform/code" not in local["PYTHONPATH"]

    download = await run_job(bus, settings, hub="huggingface")
    assert download["HF_TOKEN"] == HUB_TOKEN, "a stage that downloads its model gets the hub's token"
    assert not any(name in download for name in PLATFORM_ONLY)
