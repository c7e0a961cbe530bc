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

from .helpers import config_of, dispatch, events_of, lora_spec, new_job, until_finished

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ENGINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture
async def agent(nats_server, make_runtime, storage, agent_id):
    nc = await connect_bus(nats_server.url, "docker-runner-test")
    js = nc.jetstream()
    await ensure_streams(js)
    runner = Runner(nc=nc, js=js, agent_id=agent_id, runtime=make_runtime(), storage=storage, engine_env=ENGINE_ENV)
    await runner.start()
    yield nc, js, runner
    await runner.stop()
    await close_bus(nc)


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


@pytest.fixture
async def serving_agent(nats_server, make_runtime, storage, agent_id):
    """The runner with a docker runtime on the host's network (the test engine has no bridge): a model
    server's loopback port is the agent's, as in production with LLMCT_DOCKER_NETWORK=host."""
    nc = await connect_bus(nats_server.url, "docker-serving-test")
    js = nc.jetstream()
    await ensure_streams(js)
    runner = Runner(
        nc=nc, js=js, agent_id=agent_id, runtime=make_runtime(network="host"), storage=storage, engine_env=ENGINE_ENV
    )
    await runner.start()
    yield nc, js, runner
    await runner.stop()
    await close_bus(nc)


async def chat(nc, agent_id: str, deployment_id: str, body: dict, timeout: float = 60) -> tuple[int, bytes]:
    """A chat request over NATS as the gateway sends it; (status, body) from the agent's frames."""
    import json

    frames: asyncio.Queue = asyncio.Queue()
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=frames.put)
    await nc.publish(Subjects.deploy_chat(agent_id, deployment_id), json.dumps(body).encode(), reply=inbox)
    status, data = None, b""
    while True:
        msg = await asyncio.wait_for(frames.get(), timeout)
        headers = msg.headers or {}
        status = status or int(headers.get(contracts.ChatFrames.STATUS, 0)) or None
        if headers.get(contracts.ChatFrames.END):
            break
        data += msg.data
    await sub.unsubscribe()
    return status, data


async def test_a_deployment_serves_chat_from_a_container(serving_agent, storage, agent_id, docker_client):
    nc, js, _ = serving_agent
    job_id = new_job().replace("job_", "dep_")
    config = {
        "model_name_or_path": str(storage.models / "tiny"),
        "template": "default",
        "trust_remote_code": False,
        "infer_backend": "huggingface",
        "max_new_tokens": 4,
    }
    stage = contracts.EngineStage(
        name="serve",
        command=("llamafactory-cli", "api"),
        config_yaml=yaml.safe_dump(config),
        serve=contracts.ServeOptions(startup_timeout_s=120, idle_timeout_s=600),
    )
    queue = await events_of(nc, job_id)
    order = contracts.JobDispatched(
        job_id=job_id,
        kind="deploy",
        stages=(stage,),
        output_dir=str(storage.output / job_id),
        dispatched_at=datetime.now(UTC),
    )
    await js.publish(Subjects.job_dispatch(agent_id), contracts.encode(order))
    while not isinstance(event := await asyncio.wait_for(queue.get(), 180), contracts.DeploymentReady):
        assert not isinstance(event, contracts.JobFinished), (event.message, event.last_lines)
    containers = docker_client.containers.list(filters={"label": f"llmct.job={job_id}"})
    assert len(containers) == 1 and containers[0].status == "running"
    status, body = await chat(nc, agent_id, job_id, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
    assert status == 200 and b'"assistant"' in body, body
    await nc.publish(Subjects.job_cancel(job_id), contracts.encode(contracts.JobCancelRequested(job_id=job_id)))
    finished = (await until_finished(queue, 60))[-1]
    assert (finished.state, finished.reason) == ("cancelled", "cancelled")


@pytest.fixture
async def hub_agent(nats_server, make_runtime, storage, agent_id):
    """The runner as `agent`, with ModelScope's client told to try once (nothing is reachable here)."""
    nc = await connect_bus(nats_server.url, "docker-hub-test")
    js = nc.jetstream()
    await ensure_streams(js)
    runner = Runner(
        nc=nc,
        js=js,
        agent_id=agent_id,
        runtime=make_runtime(),
        storage=storage,
        engine_env={**ENGINE_ENV, "MODELSCOPE_API_MAX_RETRIES": "1", "MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS": "1"},
    )
    await runner.start()
    yield nc, js, runner
    await runner.stop()
    await close_bus(nc)


async def test_a_modelscope_model_is_asked_of_modelscope_from_the_container(hub_agent, storage, agent_id):
    """The real engine in a container, for a stage whose model the scheduler said is on ModelScope: it asks
    modelscope.cn (unreachable here, so the job fails there), never Hugging Face, and downloads into a cache of its
    own, never the host's shared one."""
    nc, js, _ = hub_agent
    job_id = new_job()
    config = {**config_of(lora_spec(storage, job_id)), "model_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct"}
    stage = contracts.EngineStage(
        name="train", command=("llamafactory-cli", "train"), hub="modelscope", config_yaml=yaml.safe_dump(config)
    )
    queue = await events_of(nc, job_id)
    order = contracts.JobDispatched(
        job_id=job_id,
        kind="train",
        stages=(stage,),
        output_dir=str(storage.output / job_id),
        dispatched_at=datetime.now(UTC),
    )
    await js.publish(Subjects.job_dispatch(agent_id), contracts.encode(order))
    finished = (await until_finished(queue))[-1]
    log_text = (storage.logs / f"{job_id}.log").read_text()
    assert finished.state == "failed" and "modelscope.cn" in log_text, (finished.message, finished.last_lines)
    assert "huggingface.co" not in log_text
    # It downloads into its own scratch cache (removed with its container); the shared cache is read-only to it.
    assert not (storage.hf_cache / "modelscope" / "models").exists(), "a job never writes the shared cache"
