"""The agent's runner with the docker runtime: the same loops as with the process runtime (dispatch,
logs, progress, cancel, final event), over a real NATS and a real Docker engine."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import yaml

from services.agent.runner import Runner
from services.common import contracts
from services.common.bus import close_bus, connect_bus, ensure_streams
from services.common.contracts import Subjects

from .helpers import lora_spec, new_job

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.slow]

ENGINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture
async def agent(nats_server, make_runtime, storage, agent_id):
    nc = await connect_bus(nats_server.url, "docker-runner-test")
    js = nc.jetstream()
    await ensure_streams(js)
    runner = Runner(nc=nc, js=js, agent_id=agent_id, runtime=make_runtime(), storage=storage,
                    engine_env=ENGINE_ENV)
    await runner.start()
    yield nc, js, runner
    await runner.stop()
    await close_bus(nc)


async def dispatch(js, agent_id: str, job_id: str, config: dict, output_dir) -> None:
    stage = contracts.EngineStage(name="train", command=("llamafactory-cli", "train"),
                                  config_yaml=yaml.safe_dump(config))
    order = contracts.JobDispatched(job_id=job_id, kind="train", stages=(stage,), output_dir=str(output_dir),
                                    dispatched_at=datetime.now(UTC))
    await js.publish(Subjects.job_dispatch(agent_id), contracts.encode(order))


async def events_of(nc, job_id: str) -> asyncio.Queue:
    queue: asyncio.Queue = asyncio.Queue()

    async def on_event(msg):
        await queue.put(contracts.decode(msg.data))

    await nc.subscribe(Subjects.job_status(job_id), cb=on_event)
    return queue


async def until_finished(queue: asyncio.Queue, timeout: float = 300) -> list:
    seen = []
    while not seen or not isinstance(seen[-1], contracts.JobFinished):
        seen.append(await asyncio.wait_for(queue.get(), timeout))
    return seen


def config_of(spec) -> dict:
    return yaml.safe_load(spec.config_path.read_text())


async def test_a_dispatched_job_runs_in_docker_and_reports_progress_and_logs(agent, storage, agent_id):
    nc, js, _ = agent
    job_id = new_job()
    spec = lora_spec(storage, job_id)
    queue = await events_of(nc, job_id)
    await dispatch(js, agent_id, job_id, config_of(spec), spec.output_dir)
    events = await until_finished(queue)
    finished = events[-1]
    assert (finished.state, finished.exit_code) == ("succeeded", 0), (finished.message, finished.last_lines)
    assert isinstance(events[0], contracts.JobStarted) and events[0].runtime == "docker"
    assert [e.step for e in events if isinstance(e, contracts.JobProgressed)][-1] == 10
    assert finished.metrics["train_loss"] > 0
    log_text = (storage.logs / f"{job_id}.log").read_text()
    assert "(docker runtime)" in log_text and "llamafactory.data.loader" in log_text
    assert "[INFO|trainer.py:" in log_text and "[platform] job succeeded" in log_text
    assert (spec.output_dir / "adapter_model.safetensors").exists()


async def test_a_cancel_stops_the_container_at_once(agent, storage, agent_id):
    nc, js, _ = agent
    job_id = new_job()
    spec = lora_spec(storage, job_id, max_steps=5000, save_steps=1000)
    queue = await events_of(nc, job_id)
    await dispatch(js, agent_id, job_id, config_of(spec), spec.output_dir)
    while not isinstance(event := await asyncio.wait_for(queue.get(), 300), contracts.JobProgressed):
        assert not isinstance(event, contracts.JobFinished), (event.message, event.last_lines)
    asked = asyncio.get_running_loop().time()
    await nc.publish(Subjects.job_cancel(job_id), contracts.encode(contracts.JobCancelRequested(job_id=job_id)))
    finished = (await until_finished(queue, 60))[-1]
    took = asyncio.get_running_loop().time() - asked
    assert (finished.state, finished.reason, finished.exit_code) == ("cancelled", "cancelled", 143)
    assert took < 10, f"a cancel took {took:.1f}s"
