"""What the agent's objects-mode tests share: inputs put in the store the way the control plane would, an agent
process in objects mode, dispatching to it and reading what it left in the buckets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path

from llmct.embedded import free_port, wait_until
from llmct.launcher import ServiceProcess
from services.common import contracts, objects
from services.common.contracts import Buckets, JobInput, Subjects
from tests.helpers import unique


async def stored_input(js, tmp_path: Path, path: str, size: int = 200_000, data: bytes | None = None) -> JobInput:
    """A dataset file in DATASETS by its sha256, as a job's input read at `path` (relative to the storage base)."""
    source = tmp_path / f"source-{os.urandom(4).hex()}"
    source.write_bytes(os.urandom(size) if data is None else data)
    sha256 = objects.file_sha256(source)
    stored = await objects.put_file(js, Buckets.DATASETS, Buckets.dataset_object(sha256), source)
    return JobInput(bucket=Buckets.DATASETS, name=stored.name, sha256=sha256, size=stored.size, path=path)


class Notes(list):
    """The lines a job's log would get."""

    def __call__(self, text: str) -> None:
        self.append(text)

    def saying(self, words: str) -> list[str]:
        return [line for line in self if words in line]


@contextlib.contextmanager
def agent_process(mode: str, stack_env: dict, nats_server, tmp_path_factory, engine_bin: Path, **extra: str):
    """`llmct service agent` as a process in storage `mode` ("objects": nothing shared with the control plane;
    "shared": the paths of its jobs read as they are) running the real engine, its own NATS user and storage base;
    yields (agent id, its base)."""
    base = tmp_path_factory.mktemp(f"{mode}-agent-host") / "cloud-llm"
    agent_id = unique(f"{mode}-agent")
    creds = nats_server.add_agent(agent_id)
    env = {
        **os.environ,
        **stack_env,
        "HOST_BASE_PATH": str(base),
        "LOG_BASE_PATH": str(base / "logs"),
        "HF_CACHE_PATH": str(base / "hf-cache"),
        "LLMCT_STATE_PATH": str(base.with_name("state")),
        "LLMCT_STORAGE_MODE": mode,
        "LLMCT_AGENT_ID": agent_id,
        "LLMCT_AGENT_NATS_USER": creds["NATS_USER"],
        "LLMCT_AGENT_NATS_PASSWORD": creds["NATS_PASSWORD"],
        "LLMCT_AGENT_PORT": str(free_port()),
        "LLMCT_HEARTBEAT_S": "0.5",
        "LLMCT_RUNTIME": "process",
        "LLMCT_ENGINE_BIN": str(engine_bin),
        "LLMCT_CPU_SLOTS": "2",
        **extra,
    }
    process = ServiceProcess(name="agent", port=int(env["LLMCT_AGENT_PORT"]), log_path=base.with_name("agent.log"))
    process.start(env)
    try:
        wait_until(process.healthy, timeout=60, what=f"{mode}-mode agent", interval=0.1)
        yield agent_id, base
    finally:
        process.stop()


def objects_agent(stack_env: dict, nats_server, tmp_path_factory, engine_bin: Path, **extra: str):
    """An agent process in objects mode (agent_process)."""
    return agent_process("objects", stack_env, nats_server, tmp_path_factory, engine_bin, **extra)


def shared_agent(stack_env: dict, nats_server, tmp_path_factory, engine_bin: Path, **extra: str):
    """An agent process in shared mode (agent_process)."""
    return agent_process("shared", stack_env, nats_server, tmp_path_factory, engine_bin, **extra)


async def run(
    nc, js, agent_id: str, dispatch: contracts.JobDispatched, *, during=None, timeout: float = 60, seen=None
) -> contracts.JobFinished:
    """Dispatch to the agent; its JobFinished. `during()`, run meanwhile, must have returned a time at least
    1 s before the job finished (the engine still running)."""
    seen = [] if seen is None else seen  # every event of the job, in order
    events: asyncio.Queue = asyncio.Queue()
    sub = await nc.subscribe(Subjects.job_status_of(dispatch.job_id), cb=events.put)
    try:
        await js.publish(Subjects.job_dispatch(agent_id), contracts.encode(dispatch))
        watcher = asyncio.create_task(during()) if during else None
        while True:
            event = contracts.decode((await asyncio.wait_for(events.get(), timeout)).data)
            seen.append(event)
            if isinstance(event, contracts.JobFinished):
                if watcher is not None:
                    assert watcher.done(), "what was awaited during the run happened before it finished"
                    assert asyncio.get_running_loop().time() - await watcher > 1.0, "and while the engine ran"
                return event
    finally:
        await sub.unsubscribe()


async def text_of(js, tmp_path: Path, bucket: str, name: str) -> str:
    target = tmp_path / f"fetched-{os.urandom(4).hex()}"
    await objects.fetch(js, bucket, name, target)
    return target.read_text()


async def appears(js, bucket: str, name: str, timeout: float = 30) -> float:
    """When the object appeared (the loop's clock)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await objects.describe(js, bucket, name)
            return asyncio.get_running_loop().time()
        except objects.ObjectMissing:
            assert asyncio.get_running_loop().time() < deadline, f"{bucket}/{name} never appeared"
            await asyncio.sleep(0.2)


# --- deployments -----------------------------------------------------------------------------------------------

# Run by the engine's interpreter (torch, peft): LoRA adapters of a model, each with random weights of its own (peft
# starts B at zero, no change), so that each answers differently from the base.
MAKE_ADAPTERS = """
import sys, torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM
model_dir, out = sys.argv[1], sys.argv[2]
for i, name in enumerate(sys.argv[3:]):
    torch.manual_seed(100 + i)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    for key, param in model.named_parameters():
        if "lora_B" in key:
            torch.nn.init.normal_(param, std=0.5)
    model.save_pretrained(f"{out}/{name}")
"""


@contextlib.contextmanager
def serving_agent(stack_env: dict, nats_server, tmp_path_factory, **extra: str):
    """`llmct service agent` as a process in shared mode, with its own NATS user and log folder; yields (agent id,
    its log folder)."""
    logs = tmp_path_factory.mktemp("agent-logs")
    agent_id = unique("serving-agent")
    creds = nats_server.add_agent(agent_id)
    env = {
        **os.environ,
        **stack_env,
        "LOG_BASE_PATH": str(logs),
        "LLMCT_AGENT_ID": agent_id,
        "LLMCT_AGENT_NATS_USER": creds["NATS_USER"],
        "LLMCT_AGENT_NATS_PASSWORD": creds["NATS_PASSWORD"],
        "LLMCT_AGENT_PORT": str(free_port()),
        "LLMCT_HEARTBEAT_S": "0.5",
        "LLMCT_RUNTIME": "process",
        "LLMCT_CPU_SLOTS": "1",
        **extra,
    }
    process = ServiceProcess(name="agent", port=int(env["LLMCT_AGENT_PORT"]), log_path=logs / "agent.log")
    process.start(env)
    try:
        wait_until(process.healthy, timeout=60, what="serving agent", interval=0.1)
        yield agent_id, logs
    finally:
        process.stop()


class Answer:
    """An agent's answer to one chat request: the first frame's headers, the body's frames."""

    def __init__(self, headers: dict[str, str], frames: list[bytes]):
        self.headers, self.frames = headers, frames
        self.status = int(headers.get(contracts.ChatFrames.STATUS, "0"))

    def json(self) -> dict:
        return json.loads(b"".join(self.frames))

    def events(self) -> list[dict]:
        """A streamed answer's server-sent events ([DONE] left out)."""
        text = b"".join(self.frames).decode()
        return [json.loads(e[6:]) for e in text.split("\n\n") if e.startswith("data: {")]

    def text(self) -> str:
        if self.headers.get("Content-Type", "").startswith("text/event-stream"):
            return "".join(c["choices"][0]["delta"].get("content") or "" for c in self.events() if c["choices"])
        return self.json()["choices"][0]["message"]["content"]


async def chat(
    nc, agent_id: str, deployment_id: str, body: dict, headers: dict[str, str] | None = None, timeout: float = 120
) -> Answer:
    """A chat request as the gateway sends it (core NATS, frames back on an inbox until `Llmct-End`)."""
    inbox = nc.new_inbox()
    frames: asyncio.Queue = asyncio.Queue()
    sub = await nc.subscribe(inbox, cb=frames.put)
    try:
        subject = Subjects.deploy_chat(agent_id, deployment_id)
        await nc.publish(subject, json.dumps(body).encode(), reply=inbox, headers=headers or None)
        first = await asyncio.wait_for(frames.get(), timeout)
        message, pieces = first, []
        while not (message.headers or {}).get(contracts.ChatFrames.END):
            if message.data:
                pieces.append(message.data)
            message = await asyncio.wait_for(frames.get(), timeout)
        return Answer(dict(first.headers or {}), pieces)
    finally:
        await sub.unsubscribe()
