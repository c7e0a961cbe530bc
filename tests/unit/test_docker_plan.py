"""What the docker runtime asks Docker for (mounts, environment, devices), without a Docker engine.

These run everywhere; the tests that need a real engine are in tests/docker.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import docker.types
import pytest
import yaml

from services.agent.runner import Runner, stage_downloads
from services.agent.runtimes import runtime_from_settings
from services.agent.runtimes.base import JobSpec, Reattachable
from services.agent.runtimes.docker import DEFAULT_IMAGE, LABEL_AGENT, DockerRuntime, _parse_time, container_name
from services.agent.runtimes.docker_options import DEFAULT_JOB_USER, DEFAULT_PIDS_LIMIT, default_job_user
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
    """container path -> read-only, for a prepared spec; every mount is at the same path as on the host unless
    extra (or the job's own dataset_info.json)."""
    runtime.plan.prepare(spec)
    mounts = runtime.plan.mount_plan(spec)
    return {m["Target"]: m["ReadOnly"] for m in mounts}


def write_datasets(storage: StoragePaths) -> dict[str, Path]:
    """A data folder of several users' datasets: theirs and ours, a hub one, one whose name leaves the folder."""
    uploads = storage.data / "uploads"
    (uploads / "ds_many").mkdir(parents=True)
    files = {
        "mine": uploads / "ds_mine.jsonl",
        "many": uploads / "ds_many",
        "theirs": uploads / "ds_theirs.jsonl",
    }
    files["mine"].write_text("{}\n")
    files["theirs"].write_text("{}\n")
    (files["many"] / "part-00000.jsonl").write_text("{}\n")
    info = {
        "usr_a__mine": {"file_name": "uploads/ds_mine.jsonl"},
        "usr_a__many": {"file_name": "uploads/ds_many"},
        "usr_b__theirs": {"file_name": "uploads/ds_theirs.jsonl"},
        "public_hub": {"hf_hub_url": "org/data"},
        "escape": {"file_name": "../temp"},
    }
    (storage.data / "dataset_info.json").write_text(json.dumps(info))
    return files


def test_every_host_path_is_mounted_at_the_same_path(storage):
    model = storage.models / "tiny"
    model.mkdir()
    adapters = [storage.output / "job_0", storage.checkpoints / "other"]
    for path in adapters:
        path.mkdir(parents=True)
    files = write_datasets(storage)
    spec = spec_for(
        storage,
        {
            "model_name_or_path": str(model),
            "dataset_dir": str(storage.data),
            "dataset": "usr_a__mine,usr_a__many",
            "adapter_name_or_path": ",".join(map(str, adapters)),
            "output_dir": str(storage.output / "job_1"),
        },
    )
    runtime = DockerRuntime(storage=storage, agent_id="a1", extra_mounts={"/opt/engine": "/opt/engine"})
    targets = plan(runtime, spec)
    mounts = runtime.plan.mount_plan(spec)
    info = str(storage.data / "dataset_info.json")
    assert all(m["Source"] == m["Target"] and m["Type"] == "bind" for m in mounts if m["Target"] != info)
    assert targets == {
        str(spec.config_path): True,
        info: True,
        str(files["mine"]): True,
        str(files["many"]): True,
        str(storage.output / "job_1"): False,
        str(runtime.plan.scratch(spec)): False,
        str(storage.hf_cache): True,
        str(model): True,
        str(adapters[0]): True,
        str(adapters[1]): True,
        "/opt/engine": True,
    }


def test_a_job_gets_its_own_datasets_and_yaml_never_the_folders_of_everyone(storage):
    """The data folder (every user's datasets) and the temp folder (every job's YAML) are never mounted: the job
    gets a dataset_info.json of its own datasets, their files, and its own YAML."""
    files = write_datasets(storage)
    (storage.temp / "job_other.yaml").write_text("secret: of another job\n")
    spec = spec_for(
        storage, {"dataset_dir": str(storage.data), "dataset": "usr_a__mine,escape", "eval_dataset": "public_hub"}
    )
    runtime = DockerRuntime(storage=storage, agent_id="a1", extra_mounts={})
    targets = plan(runtime, spec)
    for shared in (storage.data, storage.temp, storage.base, storage.output, files["theirs"], files["many"]):
        assert str(shared) not in targets
    assert str(spec.config_path) in targets and str(files["mine"]) in targets
    mounted = {m["Target"]: m["Source"] for m in runtime.plan.mount_plan(spec)}
    own_info = json.loads(Path(mounted[str(storage.data / "dataset_info.json")]).read_text())
    assert set(own_info) == {"usr_a__mine", "escape", "public_hub"}, "only the entries the job names"
    job_folder = str(runtime.plan.job_folder("job_1"))
    in_temp = [t for t in targets if t.startswith(f"{storage.temp}/") and not t.startswith(job_folder)]
    assert in_temp == [str(spec.config_path)], "of the temp folder, only the job's own YAML"


def test_paths_that_would_show_everyones_files_are_never_mounted(storage):
    """A model or output path that is, holds or lies in a shared folder (data, temp, state, logs, the storage
    root) would hand the job every user's files."""
    for path in (storage.base, storage.data, storage.base.parent, storage.temp / "x", storage.output):
        spec = spec_for(storage, {"model_name_or_path": str(path), "export_dir": str(storage.data / "exports")})
        targets = plan(DockerRuntime(storage=storage, agent_id="a1", extra_mounts={}), spec)
        assert str(path) not in targets and str(storage.data / "exports") not in targets, path
    calibration = storage.data / "uploads" / "calib.jsonl"
    calibration.parent.mkdir(parents=True, exist_ok=True)
    calibration.write_text("{}\n")
    spec = spec_for(storage, {"export_quantization_dataset": str(calibration)})
    assert plan(DockerRuntime(storage=storage, agent_id="a1", extra_mounts={}), spec)[str(calibration)] is True


def test_a_link_a_job_left_in_its_output_is_never_mounted(storage):
    """An earlier stage leaves `export -> ../job_victim` (or a link to the data folder) in its output; the next
    stage's export_dir and a later job's model path name it: neither is mounted (nor created, nor chowned)."""
    victim = storage.output / "job_victim"
    victim.mkdir(parents=True)
    mine = storage.output / "job_1"
    mine.mkdir(parents=True)
    (mine / "export").symlink_to(victim)
    (mine / "merged").symlink_to(storage.data)
    (mine / "real").mkdir()
    spec = spec_for(
        storage,
        {
            "export_dir": str(mine / "export"),
            "model_name_or_path": str(mine / "merged"),
            "adapter_name_or_path": f"{mine / 'export'},{mine / 'real'}",
        },
    )
    targets = plan(DockerRuntime(storage=storage, agent_id="a1", extra_mounts={}), spec)
    assert str(mine / "export") not in targets and str(mine / "merged") not in targets
    assert str(victim) not in targets and str(storage.data) not in targets
    assert str(mine) in targets, "its own output folder is mounted, and the real folder in it is visible there"


def test_hub_ids_and_missing_paths_are_not_mounted(storage):
    spec = spec_for(
        storage,
        {
            "model_name_or_path": "Qwen/Qwen2.5-0.5B",
            "adapter_name_or_path": "/nowhere/x",
            "deepspeed": "ds_z2_config.json",
        },
    )
    runtime = DockerRuntime(storage=storage, agent_id="a1", extra_mounts={})
    targets = plan(runtime, spec)
    assert set(targets) == {
        str(spec.config_path),
        str(storage.output / "job_1"),
        str(runtime.plan.scratch(spec)),
        str(storage.hf_cache),
    }


def test_paths_inside_a_mount_are_not_mounted_twice_but_writable_ones_are(storage):
    model = storage.hf_cache / "hub" / "models--x" / "snapshots" / "abc"
    model.mkdir(parents=True)
    export = storage.output / "job_1" / "export"  # a writable path inside a writable mount
    merged = storage.models / "m"
    merged.mkdir()
    spec = spec_for(storage, {"model_name_or_path": str(model), "export_dir": str(export)})
    targets = plan(DockerRuntime(storage=storage, agent_id="a1", extra_mounts={str(merged): str(merged)}), spec)
    assert str(model) not in targets and targets[str(storage.hf_cache)] is True
    assert targets[str(export)] is False and export.is_dir()


def test_a_broken_yaml_only_loses_the_yaml_paths(storage):
    spec = spec_for(storage, {})
    spec.config_path.write_text("model_name_or_path: [unclosed\n")
    targets = plan(DockerRuntime(storage=storage, agent_id="a1", extra_mounts={}), spec)
    assert str(storage.output / "job_1") in targets and str(spec.config_path) in targets


def test_create_options_follow_the_seed(storage):
    runtime = DockerRuntime(storage=storage, agent_id="gpu-7", memory="500m", extra_mounts={}, user="1000:1000")
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
    scratch = runtime.plan.scratch(spec)
    assert options["environment"] == {
        "HF_ENDPOINT": "https://hf-mirror.com",
        "HOME": str(scratch / "home"),
        "USER": "llmct-job",
        "LOGNAME": "llmct-job",
        "XDG_CACHE_HOME": str(scratch / "cache"),
        "HF_HOME": str(scratch / "hf"),
        "HF_DATASETS_CACHE": str(scratch / "datasets"),
        "HF_HUB_CACHE": str(storage.hf_cache / "hub"),
        "MODELSCOPE_CACHE": str(storage.hf_cache / "modelscope"),
        "TRITON_CACHE_DIR": str(scratch / "triton"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "NVIDIA_VISIBLE_DEVICES": "2,5",
        "CUDA_VISIBLE_DEVICES": "0,1",
    }
    [request] = options["device_requests"]
    assert isinstance(request, docker.types.DeviceRequest)
    assert request["DeviceIDs"] == ["2", "5"] and request["Capabilities"] == [["gpu"]]


def test_a_container_runs_unprivileged_and_limited(storage):
    """Not root, no capability, no new privileges (setuid binaries), a pids limit and a memory limit by default."""
    options = DockerRuntime(storage=storage, agent_id="a1", extra_mounts={}).plan.create_options(spec_for(storage, {}))
    assert options["cap_drop"] == ["ALL"] and options["security_opt"] == ["no-new-privileges:true"]
    assert options["pids_limit"] == DEFAULT_PIDS_LIMIT == 8192
    assert options["user"] == default_job_user(storage) and not options["user"].startswith("0:")
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert options["mem_limit"] == options["memswap_limit"] == int(total * 0.9)
    for root in ("0", "0:0", "root", "root:root", ":1000"):
        with pytest.raises(ValueError, match="must not run as root"):
            DockerRuntime(storage=storage, agent_id="a1", user=root)
    with pytest.raises(ValueError, match="LLMCT_DOCKER_USER"):
        runtime_from_settings(AgentSettings.from_env({"LLMCT_RUNTIME": "docker", "LLMCT_DOCKER_USER": "0:0"}), storage)


def test_the_job_user_is_the_agents_own_or_the_storage_owner(storage, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1234)
    monkeypatch.setattr(os, "getegid", lambda: 99)
    assert default_job_user(storage) == "1234:99"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    owner = storage.base.stat()
    expected = f"{owner.st_uid}:{owner.st_gid}" if owner.st_uid else DEFAULT_JOB_USER
    assert default_job_user(storage) == expected and DEFAULT_JOB_USER == "65532:65532"


def test_secrets_go_only_to_a_stage_that_downloads(storage):
    env = {"HF_TOKEN": "hf_secret", "MODELSCOPE_API_TOKEN": "ms_secret", "HF_ENDPOINT": "https://hf-mirror.com"}
    runtime = DockerRuntime(storage=storage, agent_id="a1", extra_mounts={})
    offline = runtime.plan.create_options(spec_for(storage, {}, env=env))["environment"]
    assert "HF_TOKEN" not in offline and "MODELSCOPE_API_TOKEN" not in offline
    assert offline["HF_HUB_OFFLINE"] == "1" and offline["HF_ENDPOINT"] == "https://hf-mirror.com"
    spec = spec_for(storage, {}, env=env, downloads=True)
    online = runtime.plan.create_options(spec)["environment"]
    assert online["HF_TOKEN"] == "hf_secret" and "HF_HUB_OFFLINE" not in online
    scratch = runtime.plan.scratch(spec)
    assert online["HF_HUB_CACHE"] == str(scratch / "hub"), "a download fills the job's own cache, not the shared one"
    assert online["MODELSCOPE_CACHE"] == str(scratch / "modelscope")
    assert plan(runtime, spec)[str(storage.hf_cache)] is True


def test_a_jobs_user_secrets_reach_its_container_whether_it_downloads_or_not(storage):
    """The runner puts a train stage's user secrets (services/agent/jobsecrets.py) in spec.env; the docker runtime
    passes them on as the process runtime does (they are not a hub's credentials)."""
    env = {"WANDB_API_KEY": "wandb-v", "MLFLOW_TRACKING_TOKEN": "mlflow-v", "HF_TOKEN": "hf_secret"}
    runtime = DockerRuntime(storage=storage, agent_id="a1", extra_mounts={})
    for downloads in (False, True):
        given = runtime.plan.create_options(spec_for(storage, {}, env=env, downloads=downloads))["environment"]
        assert given["WANDB_API_KEY"] == "wandb-v" and given["MLFLOW_TRACKING_TOKEN"] == "mlflow-v"
        assert ("HF_TOKEN" in given) is downloads


def test_a_stage_downloads_when_its_model_or_a_dataset_is_on_a_hub(storage):
    write_datasets(storage)
    local = {"dataset_dir": str(storage.data), "dataset": "usr_a__mine"}
    assert not stage_downloads(contracts.EngineStage(name="t", command=("x",), config_yaml=yaml.safe_dump(local)))
    assert stage_downloads(contracts.EngineStage(name="t", command=("x",), config_yaml="a: 1\n", hub="huggingface"))
    hub_data = {**local, "eval_dataset": "public_hub"}
    assert stage_downloads(contracts.EngineStage(name="t", command=("x",), config_yaml=yaml.safe_dump(hub_data)))


def test_a_cpu_job_asks_for_no_device_and_sees_no_gpu(storage):
    options = DockerRuntime(storage=storage, agent_id="a1", extra_mounts={}).plan.create_options(spec_for(storage, {}))
    assert "device_requests" not in options and "network_mode" not in options
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
    scratch = runner.runtime.plan.scratch(spec)
    assert env["MODELSCOPE_CACHE"] == str(scratch / "modelscope") and env["HF_HOME"] == str(scratch / "hf")
    assert plan(runner.runtime, spec)[str(storage.hf_cache)] is True, "the shared cache is read-only"
    for hub in (None, "huggingface"):
        runner, spec = hub_stage_spec(storage, hub)
        other = runner.runtime.plan.create_options(spec)["environment"]
        assert "USE_MODELSCOPE_HUB" not in other
    runner, spec = hub_stage_spec(storage, "huggingface")
    other = runner.runtime.plan.create_options(spec)["environment"]
    assert {k: v for k, v in env.items() if k != "USE_MODELSCOPE_HUB"} == other, "nothing else changes"


def test_a_modelscope_model_served_from_a_container_is_told_its_hub_too(storage):
    runner, spec = hub_stage_spec(storage, "modelscope", serve=True)
    env = runner.runtime.plan.create_options(spec)["environment"]
    assert env["USE_MODELSCOPE_HUB"] == "1" and env["API_HOST"] == "0.0.0.0" and env["API_PORT"] == "8000"
    _, local = hub_stage_spec(storage, None, serve=True)
    served = runner.runtime.plan.create_options(local)["environment"]
    assert served["API_KEY"] == "k", "a model server's own key is not a hub credential: it stays"


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
            "LLMCT_DOCKER_PIDS_LIMIT": "64",
        }
    )
    runtime = runtime_from_settings(settings, storage)
    plan = runtime.plan
    assert (runtime.name, plan.image, plan.memory, plan.agent_id) == ("docker", "engine:2", "8g", "host-a")
    assert plan.extra_mounts == {"/usr": "/usr", "/opt/venv": "/venv"}
    assert runtime.cleanup_delay_s == 5.0 and plan.network == "host" and plan.user == "1000:1000"
    assert plan.pids_limit == 64
    assert isinstance(runtime, Reattachable), "the runner leaves its containers running for the next agent"
    unset = runtime_from_settings(
        AgentSettings.from_env({"LLMCT_RUNTIME": "docker", "LLMCT_DOCKER_MEMORY": ""}), storage
    )
    assert (unset.plan.image, unset.plan.memory, unset.cleanup_delay_s) == (DEFAULT_IMAGE, "auto", 60.0)
    assert unset.plan.network is None and unset.plan.user is None and unset.plan.extra_mounts == {}
    assert unset.plan.pids_limit == DEFAULT_PIDS_LIMIT
    assert DockerRuntime(storage=storage, agent_id="a1", image="x:1", cleanup_delay_s=0).plan.image == "x:1"
    assert DockerRuntime(storage=storage, agent_id="a1", cleanup_delay_s=0).cleanup_delay_s == 0


def test_the_runtime_reads_no_environment(storage, monkeypatch):
    """Its settings are given (services/agent/settings.py): the environment it is built in changes nothing."""
    monkeypatch.setenv("LLMCT_DOCKER_IMAGE", "engine:2")
    monkeypatch.setenv("LLMCT_DOCKER_MEMORY", "8g")
    runtime = DockerRuntime(storage=storage, agent_id="a1")
    assert (runtime.plan.image, runtime.plan.memory) == (DEFAULT_IMAGE, "auto")


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


def test_a_training_stage_gets_the_pause_hook_read_only_and_first_on_its_pythonpath(storage):
    """services/agent/pausing.py: the hook beside the YAML, mounted read-only (nothing else of temp/); a serving
    stage gets none."""
    runner, spec = hub_stage_spec(storage, None)
    assert spec.hook_dir == storage.temp / "job_1.hook" and (spec.hook_dir / "sitecustomize.py").is_file()
    assert spec.command == ("llamafactory-cli", "train", str(spec.config_path)), "the engine's command, unchanged"
    assert isinstance(runner.runtime, DockerRuntime)
    targets = plan(runner.runtime, spec)
    assert targets[str(spec.hook_dir)] is True and targets[str(spec.config_path)] is True
    environment = runner.runtime.plan.environment(spec)
    assert environment["PYTHONPATH"].split(os.pathsep)[0] == str(spec.hook_dir)
    assert environment["TRAINER_PAUSE_FILE"] == str(storage.output / "job_1" / ".llmct-pause")
    _, served = hub_stage_spec(storage, None, serve=True)
    assert served.hook_dir is None and "TRAINER_PAUSE_FILE" not in served.env
