"""A deployment served by LLaMA-Factory's server (the engine where an agent has no vLLM) through a real agent process
and real NATS: `auto` falls back to it, `vllm` fails at once saying why, chat streamed and not, an adapter request
refused, one request at a time with the queue behind it, usage by user."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import nats
import pytest
import yaml

from services.common import contracts
from services.common.bus import ensure_streams
from services.common.contracts import Subjects
from tests.helpers import unique

from .helpers import chat, serving_agent

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
ENGINE_BIN = ROOT / ".venv-engine" / "bin"
PROMPT = {"messages": [{"role": "user", "content": "Tell me about training."}], "temperature": 0, "max_tokens": 8}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    model = tmp_path_factory.mktemp("lf-tiny") / "model"
    subprocess.run([ENGINE_BIN / "python", ROOT / "llmct/tiny/make_model.py", "--out", model], check=True, timeout=300)
    return model


@pytest.fixture(scope="module")
async def agent(stack_env, nats_server, tmp_path_factory):
    """An agent without vLLM (LLMCT_VLLM_BIN names no environment); yields (nc, agent id, heartbeats)."""
    nowhere = tmp_path_factory.mktemp("no-vllm") / "bin"
    with serving_agent(stack_env, nats_server, tmp_path_factory, LLMCT_VLLM_BIN=str(nowhere)) as (agent_id, _):
        nc = await nats.connect(nats_server.url)
        await ensure_streams(nc.jetstream())
        beats: list[contracts.AgentHeartbeat] = []

        async def on_beat(msg):
            beat = contracts.decode(msg.data)
            if isinstance(beat, contracts.AgentHeartbeat):
                beats.append(beat)

        await nc.subscribe(Subjects.agent_heartbeat(agent_id), cb=on_beat)
        try:
            yield nc, agent_id, beats
        finally:
            await nc.close()


async def deploy(nc, agent_id: str, model: Path, engine: str, events: list) -> str:
    """Dispatch a deployment of `model`; its id once it is ready or ended (its events in `events`)."""
    deployment_id = unique("dep")
    ended = asyncio.Event()

    async def on_event(msg):
        event = contracts.decode(msg.data)
        events.append(event)
        if isinstance(event, contracts.DeploymentReady | contracts.JobFinished):
            ended.set()

    await nc.subscribe(Subjects.job_status_of(deployment_id), cb=on_event)
    config = {"model_name_or_path": str(model), "template": "default", "infer_backend": "huggingface"}
    serve = contracts.ServeOptions(startup_timeout_s=180, idle_timeout_s=3600, engine=engine, max_queue=1)  # type: ignore[arg-type]
    stage = contracts.EngineStage(
        name="serve", command=("llamafactory-cli", "api"), config_yaml=yaml.safe_dump(config), serve=serve
    )
    order = contracts.JobDispatched(
        job_id=deployment_id,
        kind="deploy",
        stages=(stage,),
        output_dir=str(model.parent / "output" / deployment_id),
        dispatched_at=datetime.now(UTC),
    )
    await nc.jetstream().publish(Subjects.job_dispatch(agent_id), contracts.encode(order))
    await asyncio.wait_for(ended.wait(), 240)
    return deployment_id


async def test_asking_for_vllm_on_an_agent_without_it_fails_at_once_saying_why(agent, model):
    nc, agent_id, beats = agent
    events: list = []
    await deploy(nc, agent_id, model, "vllm", events)
    finished = [e for e in events if isinstance(e, contracts.JobFinished)]
    assert finished and finished[0].state == "failed" and finished[0].reason == "engine_missing", events
    assert "LLMCT_VLLM_BIN" in (finished[0].message or "")
    assert beats and beats[-1].engines == ("llamafactory",)


async def test_auto_falls_back_to_llamafactorys_server_which_serves_as_before(agent, model):
    nc, agent_id, _ = agent
    events: list = []
    deployment_id = await deploy(nc, agent_id, model, "auto", events)
    try:
        ready = [e for e in events if isinstance(e, contracts.DeploymentReady)]
        assert ready and ready[0].engine == "llamafactory", events
        user = unique("user")
        whole = await chat(nc, agent_id, deployment_id, PROMPT, {contracts.ChatFrames.USER: user})
        assert whole.status == 200 and whole.json()["usage"]["prompt_tokens"] > 0
        streamed = await chat(
            nc, agent_id, deployment_id, {**PROMPT, "stream": True, "stream_options": {"include_usage": True}},
            {contracts.ChatFrames.USER: user},
        )  # fmt: skip
        assert streamed.status == 200 and streamed.text()
        assert [e["usage"]["completion_tokens"] for e in streamed.events() if not e["choices"]] != []

        ref = msgspec.json.encode(contracts.AdapterRef(name="a1", adapter_path=str(model))).decode()
        refused = await chat(nc, agent_id, deployment_id, PROMPT, {contracts.ChatFrames.ADAPTER: ref})
        assert refused.status == 400 and refused.json()["error"]["code"] == "adapters_not_supported"

        # One request at a time on its server, one more waiting: the third of three at once is refused.
        slow = {**PROMPT, "max_tokens": 120}
        answers = await asyncio.gather(*(chat(nc, agent_id, deployment_id, slow) for _ in range(3)))
        assert sorted(a.status for a in answers) == [200, 200, 429]

        await asyncio.sleep(1.5)
        rows = [r for e in events if isinstance(e, contracts.DeploymentUsage) for r in e.usage if r.user_id == user]
        assert sum(r.requests for r in rows) == 2 and {r.adapter for r in rows} == {None}
        assert sum(r.prompt_tokens for r in rows) == whole.json()["usage"]["prompt_tokens"], "streamed: 0 here"
    finally:
        await nc.publish(
            Subjects.job_cancel(deployment_id),
            contracts.encode(contracts.JobCancelRequested(job_id=deployment_id, grace_s=5)),
        )
        await asyncio.sleep(2)
