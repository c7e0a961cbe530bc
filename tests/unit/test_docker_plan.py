"""What the docker runtime asks Docker for (mounts, environment, devices), without a Docker engine.

These run everywhere; the tests that need a real engine are in tests/docker.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import docker.types
import pytest
import yaml

from services.agent.runner import Runner
from services.agent.runtimes import runtime_from_settings
from services.agent.runtimes.base import JobSpec, Reattachable
from services.agent.runtimes.docker import DEFAULT_IMAGE, LABEL_AGENT, DockerRuntime, _parse_time, container_name
from services.agent.settings import AgentSettings, split_mounts
from services.common import contracts
from services.common.settings import StoragePaths

pytestmark = pytest.mark.unit


@pytest.fixture
def storage(tmp_path) -> StoragePaths:
    paths = StoragePaths(base=tmp_path / "cloud-llm", logs=tmp_path / "cloud-llm" / "logs", hf_cache=tmp_path / "hf")
    paths.ensure()
    return paths


def spec_for(storage: StoragePaths, config: dict, **fields) -> JobSpec:
    path = storage.temp / "job_1.yaml"
    path.write_text(yaml.safe_dump(config))
    return JobSpec(
        job_id="job_1",
        kind=fields.pop("kind", "train"),
        command=("llamafactory-cli", "train", str(path)),
        config_path=path,
        output_dir=storage.output / "job_1",
        **fields,
    )


def plan(runtime: DockerRuntime, spec: JobSpec) -> dict[str, bool]:
    """container path -> read-only; every mount is at the same path as on the host unless extra."""
    mounts = runtime.plan.mount_plan(spec)
    return {m["Target"]: m["ReadOnly"] for m in mounts}


def test_every_host_path_is_mounted_at_the_same_path(storage):
    model = storage.models / "tiny"
    model.mkdir()
    adapters = [storage.output / "job_0", storage.checkpoints / "other"]
    for path in adapters:
        path.mkdir(parents=True)
    spec = spec_for(
        storage,
        {
            "model_name_or_path": str(model),
            "dataset_dir": str(storage.data),
            "adapter_name_or_path": ",".join(map(str, adapters)),
            "output_dir": str(storage.output / "job_1"),
        },
    )
    runtime = DockerRuntime(storage=storage, agent_id="a1", extra_mounts={"/opt/engine": "/opt/engine"})
    mounts = runtime.plan.mount_plan(spec)
    assert all(m["Source"] == m["Target"] and m["Type"] == "bind" for m in mounts)
    assert plan(runtime, spec) == {
        str(storage.data): True,
        str(storage.temp): True,
        str(storage.output / "job_1"): False,
        str(storage.hf_cache): False,
        str(model): True,
        str(adapters[0]): True,
        str(adapters[1]): True,
        "/opt/engine": True,
    }


def test_hub_ids_and_missing_paths_are_not_mounted(storage):
    spec = spec_for(
        storage,
        {
            "model_name_or_path": "Qwen/Qwen2.5-0.5B",
            "adapter_name_or_path": "/nowhere/x",
            "deepspeed": "ds_z2_config.json",
        },
    )
    targets = plan(DockerRuntime(storage=storage, agent_id="a1", extra_mounts={}), spec)
    assert set(targets) == {str(storage.data), str(storage.temp), str(storage.output / "job_1"), str(storage.hf_cache)}


def test_paths_inside_a_mount_are_not_mounted_twice_but_writable_ones_are(storage):
    model = storage.hf_cache / "hub" / "models--x" / "snapshots" / "abc"
    model.mkdir(parents=True)
    export = storage.data / "exports" / "job_1"  # a writable path under a read-only mount
    spec = spec_for(
        storage,
        {"model_name_or_path": str(model), "export_dir": str(export), "deepspeed": str(storage.temp / "job_1.yaml")},
    )
    targets = plan(DockerRuntime(storage=storage, agent_id="a1", extra_mounts={}), spec)
    assert str(model) not in targets and str(storage.temp / "job_1.yaml") not in targets
    assert targets[str(storage.data)] is True and targets[str(export)] is False


def test_a_broken_yaml_only_loses_the_yaml_paths(storage):
    spec = spec_for(storage, {})
    spec.config_path.write_text("model_name_or_path: [unclosed\n")
    targets = plan(DockerRuntime(storage=storage, agent_id="a1", extra_mounts={}), spec)
    assert str(storage.output / "job_1") in targets and str(storage.temp) in targets


def test_create_options_follow_the_seed(storage):
    runtime = DockerRuntime(storage=storage, agent_id="gpu-7", memory="500m", extra_mounts={})
    spec = spec_for(
        storage, {}, env={"HF_ENDPOINT": "https://hf-mirror.com", "HF_HOME": "/elsewhere"}, gpu_ids=(2, 5), attempt=3
    )
    options = runtime.plan.create_options(spec)
    assert options["image"] == DEFAULT_IMAGE == "lf-with-optimum:v1.0"
    assert options["name"] == "llm-train-job_1" and options["shm_size"] == "2g" and options["init"] is True
    assert options["labels"] == {
        LABEL_AGENT: "gpu-7",
        "llmct.job": "job_1",
        "llmct.kind": "train",
        "llmct.stage": "0",
        "llmct.attempt": "3",
    }
    assert options["command"] == list(spec.command) and options["working_dir"] == str(spec.output_dir)
    assert options["mem_limit"] == options["memswap_limit"] == "500m"
    assert options["environment"] == {
        "HF_ENDPOINT": "https://hf-mirror.com",
        "HF_HOME": str(storage.hf_cache),
        "NVIDIA_VISIBLE_DEVICES": "2,5",
        "CUDA_VISIBLE_DEVICES": "0,1",
    }
    [request] = options["device_requests"]
    assert isinstance(request, docker.types.DeviceRequest)
    assert request["DeviceIDs"] == ["2", "5"] and request["Capabilities"] == [["gpu"]]


def test_a_cpu_job_asks_for_no_device_and_sees_no_gpu(storage):
    options = DockerRuntime(storage=storage, agent_id="a1", extra_mounts={}).plan.create_options(spec_for(storage, {}))
    assert "device_requests" not in options and "mem_limit" not in options and "network_mode" not in options
    assert options["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert options["environment"]["CUDA_VISIBLE_DEVICES"] == ""


def hub_stage_spec(storage: StoragePaths, hub: str | None, *, serve: bool = False) -> tuple[Runner, JobSpec]:
    """The spec the runner gives the runtime for a dispatched stage whose model comes from `hub`."""
    options = contracts.ServeOptions(startup_timeout_s=1, idle_timeout_s=1) if serve else None
    stage = contracts.EngineStage(
        name="serve" if serve else "train",
        config_yaml="model_name_or_path: Qwen/Qwen3\n",
        command=("llamafactory-cli", "api" if serve else "train"),
        hub=hub,
        serve=options,
    )
    order = contracts.JobDispatched(
        job_id="job_1",
        kind="deploy" if serve else "train",
        stages=(stage,),
        output_dir=str(storage.output / "job_1"),
        dispatched_at=datetime.now(UTC),
    )
    runtime = DockerRuntime(storage=storage, agent_id="a1", extra_mounts={})
    runner = Runner(
        nc=None,
        js=None,
        agent_id="a1",
        runtime=runtime,
        storage=storage,
        engine_env={"HF_ENDPOINT": "https://hf-mirror.com", "MODELSCOPE_ENDPOINT": "https://ms.example"},
    )
    extra = {"API_PORT": "8000", "API_KEY": "k"} if serve else None
    return runner, runner._spec(order, 0, extra, ports=(8000,) if serve else ())


def test_a_modelscope_stage_runs_in_a_container_told_its_hub(storage, monkeypatch):
    monkeypatch.setenv("USE_MODELSCOPE_HUB", "1")  # the agent's own: a container never inherits it
    runner, spec = hub_stage_spec(storage, "modelscope")
    env = runner.runtime.plan.create_options(spec)["environment"]
    assert env["USE_MODELSCOPE_HUB"] == "1" and env["MODELSCOPE_ENDPOINT"] == "https://ms.example"
    cache = env["MODELSCOPE_CACHE"]
    assert cache == str(storage.hf_cache / "modelscope") and env["HF_HOME"] == str(storage.hf_cache)
    assert plan(runner.runtime, spec)[str(storage.hf_cache)] is False, "the download cache is the shared, writable one"
    for hub in (None, "huggingface"):
        runner, spec = hub_stage_spec(storage, hub)
        other = runner.runtime.plan.create_options(spec)["environment"]
        assert "USE_MODELSCOPE_HUB" not in other and other["MODELSCOPE_CACHE"] == cache
        assert {k: v for k, v in env.items() if k != "USE_MODELSCOPE_HUB"} == other, "nothing else changes"


def test_a_modelscope_model_served_from_a_container_is_told_its_hub_too(storage):
    runner, spec = hub_stage_spec(storage, "modelscope", serve=True)
    env = runner.runtime.plan.create_options(spec)["environment"]
    assert env["USE_MODELSCOPE_HUB"] == "1" and env["API_HOST"] == "0.0.0.0" and env["API_PORT"] == "8000"


def test_settings_come_from_the_environment(storage):
    settings = AgentSettings.from_env(
        {
            "LLMCT_RUNTIME": "docker",
            "LLMCT_DOCKER_IMAGE": "engine:2",
            "LLMCT_DOCKER_MEMORY": "8g",
            "LLMCT_AGENT_ID": "host-a",
            "LLMCT_DOCKER_EXTRA_MOUNTS": "/usr, /opt/venv:/venv",
            "LLMCT_DOCKER_CLEANUP_DELAY_S": "5",
            "LLMCT_DOCKER_NETWORK": "host",
            "LLMCT_DOCKER_USER": "1000:1000",
        }
    )
    runtime = runtime_from_settings(settings, storage)
    plan = runtime.plan
    assert (runtime.name, plan.image, plan.memory, plan.agent_id) == ("docker", "engine:2", "8g", "host-a")
    assert plan.extra_mounts == {"/usr": "/usr", "/opt/venv": "/venv"}
    assert runtime.cleanup_delay_s == 5.0 and plan.network == "host" and plan.user == "1000:1000"
    assert isinstance(runtime, Reattachable), "the runner leaves its containers running for the next agent"
    unset = runtime_from_settings(
        AgentSettings.from_env({"LLMCT_RUNTIME": "docker", "LLMCT_DOCKER_MEMORY": ""}), storage
    )
    assert (unset.plan.image, unset.plan.memory, unset.cleanup_delay_s) == (DEFAULT_IMAGE, None, 60.0)
    assert unset.plan.network is None and unset.plan.user is None and unset.plan.extra_mounts == {}
    assert DockerRuntime(storage=storage, agent_id="a1", image="x:1", cleanup_delay_s=0).plan.image == "x:1"
    assert DockerRuntime(storage=storage, agent_id="a1", cleanup_delay_s=0).cleanup_delay_s == 0


def test_the_runtime_reads_no_environment(storage, monkeypatch):
    """Its settings are given (services/agent/settings.py): the environment it is built in changes nothing."""
    monkeypatch.setenv("LLMCT_DOCKER_IMAGE", "engine:2")
    monkeypatch.setenv("LLMCT_DOCKER_MEMORY", "8g")
    runtime = DockerRuntime(storage=storage, agent_id="a1")
    assert (runtime.plan.image, runtime.plan.memory) == (DEFAULT_IMAGE, None)


def test_names_and_times():
    spec = JobSpec(job_id="job 1/ü", kind="eval", command=("x",), config_path=Path("/t/x.yaml"), output_dir=Path("/o"))
    assert container_name(spec) == "llm-eval-job_1__"
    assert split_mounts("") == {} and split_mounts("/a:/b,/c") == {"/a": "/b", "/c": "/c"}
    assert _parse_time("0001-01-01T00:00:00Z") is None and _parse_time("") is None
    parsed = _parse_time("2026-11-26T11:02:52.730015693Z")
    assert parsed is not None and parsed.microsecond == 730015 and parsed.utcoffset().total_seconds() == 0
    assert _parse_time("2026-11-26T11:02:52Z").second == 52
    assert _parse_time("2026-11-26T11:02:52.5+02:00").utcoffset().total_seconds() == 7200


def test_log_messages_become_lines_and_a_catch_up_read_adds_only_what_was_missed():
    from services.agent.runtimes.docker_run import _LineReader

    t1, t2, t3 = "2026-11-26T11:14:24.761683214Z ", "2026-11-26T11:14:24.761683999Z ", "2026-11-26T11:14:25Z "
    messages = [
        t1 + "one\n",
        t2 + "a long line split by Docker, ",
        t2 + "piece two, ",
        t2 + "piece three\n",
        t3 + "tail without newline",
    ]
    frames = [m.encode() for m in messages]
    reader = _LineReader("stdout")
    # Following delivered everything up to the second piece of the split line, then ended.
    got = [line for frame in frames[:3] for line in reader.feed(frame)]
    assert got == [("stdout", "one")]
    # The catch-up read starts a second earlier: it repeats messages, and the repeats are dropped.
    reader.resume_after(reader.last_ns, reader.at_last)
    got += [line for frame in frames for line in reader.feed(frame)]
    got += reader.close()
    assert got == [
        ("stdout", "one"),
        ("stdout", "a long line split by Docker, piece two, piece three"),
        ("stdout", "tail without newline"),
    ]
    assert reader.close() == []
    crlf = _LineReader("stderr")
    assert crlf.feed(b"progress\r\n\xff bad byte\n") == [("stderr", "progress"), ("stderr", "\ufffd bad byte")]


def test_a_second_reader_resumes_exactly_after_the_lines_the_first_handed_out():
    """Cut the log anywhere: a reader resumed from the first one's `settled` position (an agent restart)
    gives exactly the lines the first did not, even when the cut falls inside a line Docker split."""
    from services.agent.runtimes.docker_run import _LineReader

    t = ["2026-11-26T11:14:24.100000000Z ", "2026-11-26T11:14:24.200000000Z ", "2026-11-26T11:14:25Z "]
    messages = [
        t[0] + "zero\n",
        t[0] + "one\n",
        t[1] + "a split line, ",
        t[1] + "its end\n",
        t[1] + "two\n",
        t[2] + "three\n",
        t[2] + "last",
    ]
    frames = [m.encode() for m in messages]
    every = ["zero", "one", "a split line, its end", "two", "three", "last"]
    for cut in range(len(frames) + 1):
        first = _LineReader("stdout")
        seen = [text for frame in frames[:cut] for _, text in first.feed(frame)]
        second = _LineReader("stdout")
        second.resume_after(*first.settled)
        rest = [text for frame in frames for _, text in second.feed(frame)] + [text for _, text in second.close()]
        assert seen + rest == every, cut
    nothing_yet = _LineReader("stderr")
    assert nothing_yet.settled == (0, 0)


def test_a_found_container_is_followed_from_its_own_position_only():
    from services.agent.runtimes.docker import DockerRuntime as Runtime

    since = Runtime.position_since("abc", 1.5)
    assert since == {"container": "abc", "stdout": [1_500_000_000, 0], "stderr": [1_500_000_000, 0]}


async def test_an_unreachable_docker_engine_is_docker_unavailable(storage, tmp_path):
    from services.agent.runtimes.base import RuntimeStartError

    runtime = DockerRuntime(
        storage=storage, agent_id="a1", extra_mounts={}, base_url=f"unix://{tmp_path / 'no-docker.sock'}"
    )
    with pytest.raises(RuntimeStartError) as caught:
        await runtime.start(spec_for(storage, {}))
    assert caught.value.reason == "docker_unavailable" and "cannot reach the Docker engine" in caught.value.message
