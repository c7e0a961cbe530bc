"""The agent's serving logic without an engine: vLLM's command line from a deployment's YAML, which engine serves,
the adapter pool's loads and unloads, the in-flight and queue limits, usage counts (the real vLLM:
tests/integration/agent/test_agent_vllm.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import msgspec
import pytest

from services.agent import frames
from services.agent.adapters import AdapterLoadFailed, AdapterPool, SharedFiles
from services.agent.admission import Admission, QueueFull
from services.agent.serving import ModelServer
from services.agent.usage import UsageBook
from services.agent.vllm import (
    BadServeConfig,
    EngineUnavailable,
    VllmSetup,
    default_max_tokens,
    engine_load,
    has_vllm,
    resolve_engine,
    served_names,
    serving_engines,
    vllm_command,
)
from services.common import contracts
from services.common.contracts import AdapterRef, ChatFrames, ServeOptions, UsageRow

pytestmark = pytest.mark.unit

SETUP = VllmSetup(bin=Path("/opt/vllm/bin"), cpu_kv_cache_bytes=1 << 28, cpu_max_model_len=1024)
OPTIONS = ServeOptions(startup_timeout_s=60, idle_timeout_s=60, engine="auto", adapter_slots=3, max_lora_rank=48)


def args(command: tuple[str, ...]) -> dict[str, str]:
    """`--flag=value` arguments as {flag: value} (a bare flag: "")."""
    given: dict[str, str] = {}
    for arg in command:
        if arg.startswith("--"):
            flag, _, value = arg.partition("=")
            given[flag] = value
    return given


# --- vLLM's command line ------------------------------------------------------------------------------------------


def test_a_cpu_deployment_gets_float32_a_small_kv_cache_and_the_models_own_length_at_most(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    config = {"model_name_or_path": str(model), "template": "default", "temperature": 0.3, "do_sample": False}
    command = vllm_command(config, OPTIONS, served_names("dep_1", config), port=4321, gpu_count=0, setup=SETUP)
    assert command[:3] == ("python", "-m", "vllm.entrypoints.openai.api_server")
    given = args(command)
    assert given["--model"] == str(model) and given["--served-model-name"] == "dep_1"
    assert given["--host"] == "127.0.0.1" and given["--port"] == "4321"
    assert given["--dtype"] == "float32" and given["--kv-cache-memory-bytes"] == str(1 << 28)
    assert given["--max-model-len"] == "512", "the model's own length is shorter than the setting's"
    assert (given["--max-loras"], given["--max-cpu-loras"], given["--max-lora-rank"]) == ("3", "3", "64")
    assert "--enable-lora" in given and given["--max-num-seqs"] == str(OPTIONS.max_in_flight)
    assert json.loads(given["--override-generation-config"]) == {"temperature": 0.0}, "do_sample false: greedy"
    assert "--lora-modules" not in given and "--api-key" not in given, "the key goes in the environment"


def test_a_deployed_adapter_is_preloaded_under_the_deployments_id_beside_its_base():
    config = {"model_name_or_path": "/m/base", "adapter_name_or_path": "/o/job_1", "max_new_tokens": 99}
    names = served_names("dep_2", config)
    given = args(vllm_command(config, OPTIONS, names, port=1, gpu_count=0, setup=SETUP))
    assert names.default == "dep_2" and given["--served-model-name"] == "dep_2-base"
    assert json.loads(given["--lora-modules"]) == {"name": "dep_2", "path": "/o/job_1", "base_model_name": "dep_2-base"}
    assert given["--max-loras"] == "4", "its slot comes on top of the pool's"
    assert given["--max-model-len"] == "1024"
    assert "--override-generation-config" not in given, "vLLM would take max_new_tokens as a cap on every request"
    assert default_max_tokens(config) == 99, "the agent adds it to a request that names no limit of its own"


def test_a_gpu_deployment_gets_its_dtype_and_its_gpus_and_no_cpu_limits():
    config = {"model_name_or_path": "/m", "infer_dtype": "bfloat16", "vllm_gpu_util": 0.8, "vllm_enforce_eager": True}
    options = msgspec.structs.replace(OPTIONS, max_model_len=4096, max_lora_rank=256)
    given = args(vllm_command(config, options, served_names("d", config), port=1, gpu_count=2, setup=SETUP))
    assert given["--dtype"] == "bfloat16" and given["--tensor-parallel-size"] == "2"
    assert given["--gpu-memory-utilization"] == "0.8" and "--enforce-eager" in given
    assert given["--max-model-len"] == "4096" and given["--max-lora-rank"] == "256"
    assert "--kv-cache-memory-bytes" not in given


def test_a_value_never_becomes_a_flag_of_its_own():
    config = {"model_name_or_path": "--trust-remote-code", "adapter_name_or_path": "--api-key"}
    command = vllm_command(config, OPTIONS, served_names("d", config), port=1, gpu_count=0, setup=SETUP)
    assert "--trust-remote-code" not in command and "--api-key" not in command
    assert "--model=--trust-remote-code" in command


@pytest.mark.parametrize(
    "config, words",
    [({}, "no model_name_or_path"), ({"model_name_or_path": "/m", "adapter_name_or_path": "/a,/b"}, "one adapter")],
)
def test_a_yaml_vllm_cannot_serve_is_refused(config, words):
    with pytest.raises(BadServeConfig, match=words):
        served_names("d", config)


# --- which engine --------------------------------------------------------------------------------------------------


def test_auto_is_vllm_where_the_agent_has_it_and_asking_for_a_missing_vllm_fails():
    both, only_lf = serving_engines("process", SETUP), serving_engines("process", None)
    assert both == ("vllm", "llamafactory") and only_lf == ("llamafactory",)
    assert serving_engines("docker", SETUP) == ("llamafactory",), "vLLM runs with the process runtime only"
    assert [resolve_engine(choice, both) for choice in ("auto", "vllm", "llamafactory")] == [
        "vllm",
        "vllm",
        "llamafactory",
    ]
    assert resolve_engine("auto", only_lf) == "llamafactory"
    with pytest.raises(EngineUnavailable, match="LLMCT_VLLM_BIN"):
        resolve_engine("vllm", only_lf)


def test_vllm_is_found_by_its_files_without_importing_it(tmp_path):
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    assert not has_vllm(bin_dir) and not has_vllm(tmp_path / "nowhere")
    (bin_dir / "python").touch()
    assert not has_vllm(bin_dir), "a Python without vLLM"
    package = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "vllm"
    package.mkdir(parents=True)
    (package / "__init__.py").touch()
    assert has_vllm(bin_dir)


def test_the_engines_load_is_read_from_its_metrics():
    text = "\n".join(
        [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            'vllm:num_requests_running{engine="0",model_name="d"} 3.0',
            'vllm:num_requests_waiting{engine="0",model_name="d"} 2.0',
            'vllm:num_requests_waiting_by_reason{engine="0",model_name="d",reason="capacity"} 2.0',
            'vllm:kv_cache_usage_perc{engine="0",model_name="d"} 0.125',
        ]
    )
    assert engine_load(text) == (3, 2, 12.5)
    assert engine_load("") == (0, 0, None)


# --- the adapter pool ----------------------------------------------------------------------------------------------


class FakeEngine:
    def __init__(self, fail: set[str] | None = None):
        self.fail = fail or set()
        self.calls: list[tuple[str, str]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def load_adapter(self, name: str, path: str, replace: bool) -> None:
        self.calls.append(("load" + (" in place" if replace else ""), name))
        await self.gate.wait()
        if name in self.fail:
            raise AdapterLoadFailed(f"{name}: no adapter there")

    async def unload_adapter(self, name: str) -> None:
        self.calls.append(("unload", name))


def ref(name: str, path: str | None = None) -> AdapterRef:
    return AdapterRef(name=name, adapter_path=path or f"/o/{name}")


async def test_the_least_recently_used_adapter_no_request_holds_is_unloaded_beyond_the_slots():
    engine = FakeEngine()
    pool = AdapterPool(engine, SharedFiles(), slots=2)
    assert await pool.acquire(ref("a")) == "a"  # held by a running request
    for name in ("b", "c"):
        await pool.acquire(ref(name))
        await pool.release(name)
    assert ("unload", "b") in engine.calls and ("unload", "a") not in engine.calls, "a is in use: b goes"
    assert list(pool.loaded) == ["a", "c"]
    await pool.acquire(ref("d"))  # a still held, c the least recently used free one
    await pool.release("d")
    assert list(pool.loaded) == ["a", "d"]
    assert list(pool.loaded) == [a.name for a in pool.state()]


async def test_when_every_adapter_is_held_the_pool_goes_over_and_comes_back_as_they_are_let_go():
    engine = FakeEngine()
    pool = AdapterPool(engine, SharedFiles(), slots=1)
    await pool.acquire(ref("a"))
    await pool.acquire(ref("b"))
    assert list(pool.loaded) == ["a", "b"] and not [c for c in engine.calls if c[0] == "unload"]
    await pool.release("a")
    assert list(pool.loaded) == ["b"] and engine.calls[-1] == ("unload", "a")


async def test_requests_arriving_while_an_adapter_loads_wait_for_that_one_load():
    engine = FakeEngine()
    engine.gate.clear()
    pool = AdapterPool(engine, SharedFiles(), slots=2)
    waiting = [asyncio.create_task(pool.acquire(ref("a"))) for _ in range(5)]
    await asyncio.sleep(0.01)
    engine.gate.set()
    assert await asyncio.gather(*waiting) == ["a"] * 5
    assert engine.calls == [("load", "a")] and pool.loaded["a"].holders == 5


async def test_a_failed_load_is_remembered_for_five_minutes_by_name_and_folder():
    now = [0.0]
    engine = FakeEngine(fail={"bad"})
    pool = AdapterPool(engine, SharedFiles(), slots=2, clock=lambda: now[0])
    for _ in range(3):
        with pytest.raises(AdapterLoadFailed, match="no adapter there"):
            await pool.acquire(ref("bad"))
    assert engine.calls == [("load", "bad")], "asked once"
    with pytest.raises(AdapterLoadFailed):
        await pool.acquire(ref("bad", "/elsewhere"))  # another folder: tried
    now[0] = 301.0
    with pytest.raises(AdapterLoadFailed):
        await pool.acquire(ref("bad"))
    assert engine.calls == [("load", "bad")] * 3 and "bad" not in pool.loaded


async def test_an_adapter_whose_folder_changed_is_loaded_again_in_place():
    engine = FakeEngine()
    pool = AdapterPool(engine, SharedFiles(), slots=2)
    await pool.acquire(ref("a", "/o/1"))
    await pool.release("a")
    await pool.acquire(ref("a", "/o/2"))
    assert engine.calls == [("load", "a"), ("load in place", "a")]
    assert pool.loaded["a"].ref.adapter_path == "/o/2"


# --- limits and usage ------------------------------------------------------------------------------------------------


async def test_requests_beyond_in_flight_wait_and_beyond_the_queue_are_refused():
    admission = Admission(max_in_flight=2, max_queue=1)
    entered, release = [], asyncio.Event()

    async def request(n: int) -> None:
        async with admission.place():
            entered.append(n)
            await release.wait()

    tasks = [asyncio.create_task(request(n)) for n in range(3)]
    await asyncio.sleep(0.01)
    assert entered == [0, 1] and (admission.running, admission.waiting) == (2, 1)
    with pytest.raises(QueueFull) as full:
        async with admission.place():
            pass
    assert 1 <= full.value.retry_after_s <= 60
    release.set()
    await asyncio.gather(*tasks)
    assert entered == [0, 1, 2] and (admission.running, admission.waiting) == (0, 0)
    async with admission.place():  # room again
        pass


def test_usage_is_counted_by_user_and_adapter_and_taken_once():
    book = UsageBook()
    book.count("u1", None, 10, 5)
    book.count("u1", "a", 7, 3)
    book.count("u1", None, 2, 1)
    book.count("u2", "a", 1, 1)
    requests, tokens, rows = book.take()
    assert (requests, tokens) == (4, 10)
    assert set(rows) == {
        UsageRow(user_id="u1", adapter=None, requests=2, prompt_tokens=12, completion_tokens=6),
        UsageRow(user_id="u1", adapter="a", requests=1, prompt_tokens=7, completion_tokens=3),
        UsageRow(user_id="u2", adapter="a", requests=1, prompt_tokens=1, completion_tokens=1),
    }
    assert book.take()[:2] == (0, 0) and book.take()[2] == ()


class FakeNats:
    def __init__(self):
        self.published: list[tuple[str, bytes, dict | None]] = []

    async def publish(self, subject: str, data: bytes = b"", headers: dict | None = None) -> None:
        self.published.append((subject, data, headers))


class Msg:
    def __init__(self, data: bytes, headers: dict[str, str]):
        self.data, self.headers, self.reply = data, headers, "_INBOX.x"


async def test_llamafactorys_server_answers_a_request_for_an_adapter_400_without_asking_the_engine():
    nc = FakeNats()
    server = ModelServer(
        nc=nc,  # type: ignore[arg-type]
        deployment_id="dep_1",
        agent_id="a1",
        publish=None,  # type: ignore[arg-type]
        note=lambda _: None,
        options=OPTIONS,
        engine="llamafactory",
    )
    try:
        header = msgspec.json.encode(ref("a")).decode()
        await server._relay(Msg(b'{"messages": []}', {ChatFrames.ADAPTER: header}))
    finally:
        await server._http.aclose()
    (_, body, headers), (_, end, last) = nc.published
    assert headers and headers[ChatFrames.STATUS] == "400" and last == {ChatFrames.END: "1"} and not end
    assert json.loads(body)["error"]["code"] == "adapters_not_supported"
    assert server.adapters is None and server.admission.max_in_flight == 1
    assert server.usage.requests == 0, "refused before the engine: not served"
    assert isinstance(contracts.ServeOptions(startup_timeout_s=1, idle_timeout_s=1).engine, str)


class Reads(httpx.AsyncByteStream):
    """An engine's body as the reads that bring it."""

    def __init__(self, reads: list[bytes]):
        self.reads = reads

    async def __aiter__(self):
        for read in self.reads:
            yield read


async def test_vllm_events_of_one_read_go_in_one_frame_and_an_event_split_across_reads_stays_whole():
    usage = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}\n\n'
    reads = [
        b'data: {"id":"c","choices":[{"delta":{"content":"a"}}]}\n\n',  # one event, alone: a frame of its own
        b'data: {"id":"c","choices":[{"delta":{"content":"b"}}]}\n\ndata: {"id":"c","choices":[{"del',  # 1 and a half
        b'ta":{"content":"c"}}]}\n\n' + usage + b"data: [DONE]\n\n",
    ]
    for include_usage in (False, True):
        nc = FakeNats()
        response = httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Reads(reads))
        tokens = await frames.relay_vllm_events(nc, "_INBOX.r", response, include_usage)  # type: ignore[arg-type]
        assert (tokens.prompt, tokens.completion) == (7, 3)
        bodies = [data.decode() for _, data, _ in nc.published]
        assert len(bodies) == 3, "one frame per read, not per event"
        assert nc.published[0][2] is not None and all(h is None for _, _, h in nc.published[1:])
        text = "".join(bodies)
        assert [e for e in text.split("\n\n") if e][-1] == "data: [DONE]"
        assert '"content":"c"' in bodies[2] and '"content":"b"' in bodies[1], "an event split across reads is whole"
        assert ('"usage"' in text) is include_usage, "the usage chunk only when the client asked for it"
