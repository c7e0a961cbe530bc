"""A deployment served by the real vLLM (CPU build, .venv-vllm) through a real agent process and real NATS: readiness,
adapters loaded at run time (and unloaded beyond the slots), failed loads remembered, the queue limit, usage.

One vLLM server for the module (two cores: never two at once), stopped when the module ends."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import nats
import pytest
import yaml

from services.agent.vllm import has_vllm
from services.common import contracts
from services.common.bus import ensure_streams
from services.common.contracts import Subjects
from tests.helpers import unique

from .helpers import MAKE_ADAPTERS, chat, serving_agent

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
ENGINE_PYTHON = ROOT / ".venv-engine" / "bin" / "python"
VLLM_BIN = ROOT / ".venv-vllm" / "bin"
ADAPTERS = ("a1", "a2", "a3")
SLOTS = 2
PROMPT = {"messages": [{"role": "user", "content": "Tell me about training."}], "temperature": 0, "max_tokens": 12}

if not has_vllm(VLLM_BIN):
    pytest.skip("no vLLM in .venv-vllm (engine/vllm/install.sh)", allow_module_level=True)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The tiny model (head_dim 32, which vLLM's CPU attention takes) and three adapters of it, plus a folder that is
    no adapter."""
    folder = tmp_path_factory.mktemp("vllm-tiny")
    model = folder / "model"
    subprocess.run([ENGINE_PYTHON, ROOT / "llmct/tiny/make_model.py", "--out", model], check=True, timeout=300)
    subprocess.run([ENGINE_PYTHON, "-c", MAKE_ADAPTERS, model, folder, *ADAPTERS], check=True, timeout=300)
    (folder / "broken").mkdir()
    (folder / "broken" / "adapter_config.json").write_text("{}")
    return folder


class Deployment:
    """A deployment on the module's agent: its id, the events it reported, a connection to chat on."""

    def __init__(self, nc, agent_id: str, deployment_id: str, log: Path):
        self.nc, self.agent_id, self.id, self.log = nc, agent_id, deployment_id, log
        self.events: list[contracts.Message] = []
        self.beats: list[contracts.AgentHeartbeat] = []

    async def chat(self, body: dict, **headers: str):
        return await chat(self.nc, self.agent_id, self.id, body, headers)

    def usage(self) -> list[contracts.DeploymentUsage]:
        return [e for e in self.events if isinstance(e, contracts.DeploymentUsage)]

    def log_lines(self, words: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if words in line]


def adapter(tiny: Path, name: str, folder: str | None = None) -> str:
    """An `Llmct-Adapter` header as the gateway sends it (shared mode: no inputs)."""
    ref = contracts.AdapterRef(name=name, adapter_path=str(tiny / (folder or name)))
    return msgspec.json.encode(ref).decode()


@pytest.fixture(scope="module")
async def deployment(stack_env, nats_server, tmp_path_factory, tiny):
    """The tiny model deployed with engine auto (vLLM here), two adapter slots, two requests in flight, one queued."""
    with serving_agent(stack_env, nats_server, tmp_path_factory, LLMCT_VLLM_BIN=str(VLLM_BIN)) as (agent_id, logs):
        nc = await nats.connect(nats_server.url)
        await ensure_streams(nc.jetstream())
        deployment_id = unique("dep")
        dep = Deployment(nc, agent_id, deployment_id, logs / f"{deployment_id}.log")
        ready = asyncio.Event()

        async def on_event(msg):
            event = contracts.decode(msg.data)
            dep.events.append(event)
            if isinstance(event, contracts.DeploymentReady | contracts.JobFinished):
                ready.set()

        async def on_beat(msg):
            beat = contracts.decode(msg.data)
            if isinstance(beat, contracts.AgentHeartbeat):
                dep.beats.append(beat)

        await nc.subscribe(Subjects.job_status_of(deployment_id), cb=on_event)
        await nc.subscribe(Subjects.agent_heartbeat(agent_id), cb=on_beat)
        config = {"model_name_or_path": str(tiny / "model"), "template": "default", "max_new_tokens": 64}
        serve = contracts.ServeOptions(
            startup_timeout_s=240,
            idle_timeout_s=3600,
            engine="auto",
            adapter_slots=SLOTS,
            max_lora_rank=8,
            max_in_flight=2,
            max_queue=1,
            max_model_len=256,
        )
        stage = contracts.EngineStage(
            name="serve", command=("llamafactory-cli", "api"), config_yaml=yaml.safe_dump(config), serve=serve
        )
        order = contracts.JobDispatched(
            job_id=deployment_id,
            kind="deploy",
            stages=(stage,),
            output_dir=str(tiny / "output" / deployment_id),
            dispatched_at=datetime.now(UTC),
        )
        try:
            await nc.jetstream().publish(Subjects.job_dispatch(agent_id), contracts.encode(order))
            await asyncio.wait_for(ready.wait(), 300)
            yield dep
        finally:
            await nc.publish(
                Subjects.job_cancel(deployment_id),
                contracts.encode(contracts.JobCancelRequested(job_id=deployment_id, grace_s=5)),
            )
            await asyncio.sleep(2)
            await nc.close()


async def test_the_deployment_is_ready_on_vllm_and_answers_its_base(deployment):
    ready = [e for e in deployment.events if isinstance(e, contracts.DeploymentReady)]
    assert ready and ready[0].engine == "vllm", deployment.events
    assert deployment.beats and deployment.beats[-1].engines == ("vllm", "llamafactory")
    answer = await deployment.chat({**PROMPT, "model": "anything"})
    assert answer.status == 200, answer.frames
    body = answer.json()
    assert body["model"] == deployment.id and body["usage"]["prompt_tokens"] > 0 and answer.text()


async def test_an_adapter_is_loaded_on_first_use_and_answers_differently(deployment, tiny):
    base = (await deployment.chat(PROMPT)).text()
    first = await deployment.chat(PROMPT, **{contracts.ChatFrames.ADAPTER: adapter(tiny, "a1")})
    assert first.status == 200, first.frames
    assert first.json()["model"] == "a1" and first.text() != base
    again = await deployment.chat(PROMPT, **{contracts.ChatFrames.ADAPTER: adapter(tiny, "a1")})
    assert again.text() == first.text()
    assert len(deployment.log_lines("adapter a1 loaded")) == 1, "loaded once, on first use"
    by_name = await deployment.chat({**PROMPT, "model": "a1"})  # loaded, but not given by the gateway
    assert by_name.json()["model"] == deployment.id and by_name.text() == base, "only the header picks an adapter"


async def test_base_and_adapter_requests_at_once_answer_as_alone(deployment, tiny):
    header = {contracts.ChatFrames.ADAPTER: adapter(tiny, "a1")}
    long = {**PROMPT, "max_tokens": 40}
    base_alone = (await deployment.chat(long)).text()
    adapter_alone = (await deployment.chat(long, **header)).text()
    together = await asyncio.gather(deployment.chat(long), deployment.chat(long, **header))
    assert [a.status for a in together] == [200, 200]
    assert [a.text() for a in together] == [base_alone, adapter_alone], "a mixed batch must not mix the weights"


async def test_more_adapters_than_slots_unloads_the_least_recently_used_and_loads_it_again(deployment, tiny):
    answers = {}
    for name in ADAPTERS:  # three adapters, two slots
        answer = await deployment.chat(PROMPT, **{contracts.ChatFrames.ADAPTER: adapter(tiny, name)})
        assert answer.status == 200, answer.frames
        answers[name] = answer.text()
    assert len(set(answers.values())) == 3
    assert deployment.log_lines("adapter a1 unloaded"), "a1 was the least recently used"
    again = await deployment.chat(PROMPT, **{contracts.ChatFrames.ADAPTER: adapter(tiny, "a1")})
    assert again.text() == answers["a1"]
    assert len(deployment.log_lines("adapter a1 loaded")) == 2, "loaded again after it was unloaded"
    await asyncio.sleep(1.5)  # a usage report with the engine's load
    loads = [u.load for u in deployment.usage() if u.load is not None]
    assert loads and len(loads[-1].adapters) <= SLOTS and "a1" in {a.name for a in loads[-1].adapters}


async def test_an_adapter_that_fails_to_load_answers_422_and_is_not_tried_again(deployment, tiny):
    header = {contracts.ChatFrames.ADAPTER: adapter(tiny, "broken-one", "broken")}
    answers = [await deployment.chat(PROMPT, **header) for _ in range(3)]
    assert [a.status for a in answers] == [422, 422, 422]
    errors = [a.json()["error"] for a in answers]
    assert {e["code"] for e in errors} == {"adapter_load_failed"}
    assert "broken-one" in errors[0]["message"] and "lora_alpha" in errors[0]["message"], "the engine's reason"
    assert errors[2]["message"] == errors[0]["message"]
    assert len(deployment.log_lines("adapter broken-one not loaded")) == 1, "the engine was asked once"
    assert (await deployment.chat(PROMPT)).status == 200, "the engine still serves"


async def test_requests_beyond_the_queue_are_answered_429_with_retry_after(deployment):
    slow = {**PROMPT, "max_tokens": 200, "ignore_eos": True}
    answers = await asyncio.gather(*(deployment.chat(slow) for _ in range(5)))  # two run, one waits
    refused = [a for a in answers if a.status == 429]
    assert len(refused) == 2 and sum(a.status == 200 for a in answers) == 3, [a.status for a in answers]
    assert int(refused[0].headers[contracts.ChatFrames.RETRY_AFTER]) >= 1
    assert refused[0].json()["error"]["code"] == "rate_limit_exceeded"


async def test_streamed_requests_are_counted_with_their_prompt_tokens_by_user_and_adapter(deployment, tiny):
    user = unique("user")
    plain = await deployment.chat({**PROMPT, "stream": True}, **{contracts.ChatFrames.USER: user})
    assert plain.status == 200 and plain.text()
    assert all(e["choices"] for e in plain.events()), "no usage chunk the client did not ask for"
    asked = await deployment.chat(
        {**PROMPT, "stream": True, "stream_options": {"include_usage": True}},
        **{contracts.ChatFrames.USER: user, contracts.ChatFrames.ADAPTER: adapter(tiny, "a2")},
    )
    usage = [e["usage"] for e in asked.events() if not e["choices"]]
    assert len(usage) == 1 and usage[0]["prompt_tokens"] > 0
    await asyncio.sleep(1.5)
    rows = [row for report in deployment.usage() for row in report.usage if row.user_id == user]
    by_adapter = {row.adapter: row for row in rows}
    assert set(by_adapter) == {None, "a2"}
    assert by_adapter[None].requests == 1 and by_adapter[None].prompt_tokens == usage[0]["prompt_tokens"]
    assert by_adapter["a2"].completion_tokens == usage[0]["completion_tokens"]
