"""The docker runtime against a real Docker engine: real LLaMA-Factory in a container, OOM, stop,
cleanup, and the start errors a user must be told about.

The engine is the test setup's own dockerd (tests/fixtures_docker.py); the image is imported from a
tiny rootfs, and the engine venv, the host's /usr and the Python prefix are mounted read-only.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from pathlib import Path

import docker
import docker.errors
import docker.types
import pytest

from services.agent import failures
from services.agent.runtimes.base import ExitInfo, RuntimeStartError
from services.agent.runtimes.docker import LABEL_AGENT, LABEL_JOB, LABEL_KIND, DockerRun

from .helpers import lora_spec, new_job, python_spec

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RUN_TIMEOUT_S = 300


async def run_to_end(run: DockerRun, timeout: float = RUN_TIMEOUT_S) -> tuple[list[tuple[str, str]], ExitInfo]:
    async def collect():
        lines = [item async for item in run.lines()]
        return lines, await run.wait()

    return await asyncio.wait_for(collect(), timeout)


def containers_named(client: docker.DockerClient, name: str) -> list:
    return [c for c in client.containers.list(all=True) if c.name == name]


async def test_a_real_lora_job_runs_in_a_container(make_runtime, storage, docker_client, agent_id):
    runtime = make_runtime()
    job_id = new_job()
    spec = lora_spec(storage, job_id)
    started = time.monotonic()
    run = await runtime.start(spec)
    lines, exit_info = await run_to_end(run)
    elapsed = time.monotonic() - started
    text = "\n".join(f"{stream}: {line}" for stream, line in lines)

    assert exit_info == ExitInfo(exit_code=0), text[-4000:]
    streams = {stream for stream, _ in lines}
    assert streams == {"stdout", "stderr"}, text[-4000:]
    # LLaMA-Factory's logger and the trainer's metrics go to stdout, transformers' logger to stderr.
    by_stream = {name: [line for s, line in lines if s == name] for name in ("stdout", "stderr")}
    assert any("llamafactory.data.loader" in line for line in by_stream["stdout"]), text[-4000:]
    assert any("train_loss" in line for line in by_stream["stdout"]), text[-4000:]
    assert any(line.startswith("[INFO|trainer.py:") for line in by_stream["stderr"]), text[-4000:]
    assert not any("llamafactory.data.loader" in line for line in by_stream["stderr"]), text[-4000:]
    assert not any(line.startswith("[INFO|trainer.py:") for line in by_stream["stdout"]), text[-4000:]

    # The artifacts are on the host, at the paths the YAML names.
    out = spec.output_dir
    assert (out / "adapter_model.safetensors").stat().st_size > 0
    assert (out / "checkpoint-10" / "adapter_model.safetensors").exists()
    steps = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines() if line]
    assert [s["current_steps"] for s in steps if "loss" in s] == list(range(1, 11))

    # The container is the one the seed describes, labelled for this agent.
    info = docker_client.api.inspect_container(f"llm-train-{job_id}")
    assert info["Config"]["Labels"] == {
        LABEL_AGENT: agent_id,
        LABEL_JOB: job_id,
        LABEL_KIND: "train",
        "llmct.stage": "0",
        "llmct.attempt": "1",
    }
    assert info["HostConfig"]["ShmSize"] == 2 * 1024**3 and info["HostConfig"]["Init"] is True
    assert info["Config"]["Image"] == runtime.plan.image and info["Config"]["Cmd"] == list(spec.command)
    env = dict(item.split("=", 1) for item in info["Config"]["Env"])
    assert env["HF_HOME"] == str(runtime.plan.scratch(spec) / "hf") and env["NVIDIA_VISIBLE_DEVICES"] == "void"
    modes = {m["Destination"]: m["RW"] for m in info["Mounts"]}
    # Its own dataset and YAML, not the data and temp folders of everyone's (tests/docker/test_docker_isolation.py).
    assert str(storage.data) not in modes and str(storage.temp) not in modes
    assert (
        modes[str(storage.data / "dataset_info.json")] is False and modes[str(storage.data / "tiny_sft.json")] is False
    )
    assert modes[str(spec.config_path)] is False and modes[str(runtime.plan.scratch(spec))] is True
    assert modes[str(out)] is True and modes[str(storage.hf_cache)] is False
    assert modes[str(storage.models / "tiny")] is False and modes["/usr"] is False
    assert info["Config"]["User"] != "" and not info["Config"]["User"].startswith("0")
    assert str(storage.output) not in modes  # other jobs' outputs are not this job's business
    print(f"\nLoRA in a container: {elapsed:.1f}s, {len(lines)} lines")


async def test_stdout_and_stderr_are_told_apart(make_runtime, storage):
    code = (
        "import sys\n"
        "print('out one'); print('err one', file=sys.stderr, flush=True)\n"
        "print('out two: ünï ✓'); sys.stderr.write('err two' + 'x' * 70000 + '\\n')\n"
        "sys.stdout.write('no newline at the end'); sys.exit(3)\n"
    )
    run = await make_runtime().start(python_spec(storage, new_job(), code))
    lines, exit_info = await run_to_end(run, 60)
    assert exit_info == ExitInfo(exit_code=3)
    assert [line for s, line in lines if s == "stdout"] == ["out one", "out two: ünï ✓", "no newline at the end"]
    assert [line for s, line in lines if s == "stderr"] == ["err one", "err two" + "x" * 70000]


async def test_a_memory_limit_is_reported_as_out_of_memory(make_runtime, storage):
    run = await make_runtime(memory="300m").start(lora_spec(storage, new_job()))
    lines, exit_info = await run_to_end(run)
    tail = [line for _, line in lines[-50:]]
    assert exit_info.exit_code == 137 and exit_info.oom_killed is True, tail
    reason, message = failures.classify(exit_info, tail)
    assert reason == "out_of_memory" and "per_device_train_batch_size" in message


async def test_stop_ends_a_running_container_at_once(make_runtime, storage):
    code = "import time\nprint('ready', flush=True)\ntime.sleep(600)\n"
    run = await make_runtime().start(python_spec(storage, new_job(), code))
    lines = run.lines()
    assert await asyncio.wait_for(anext(lines), 60) == ("stdout", "ready")
    started = time.monotonic()
    await run.stop(grace_s=20)
    stopped_in = time.monotonic() - started

    async def drain():
        return [item async for item in lines]

    rest = await asyncio.wait_for(drain(), 30)
    exit_info = await asyncio.wait_for(run.wait(), 30)
    # init=True: the init process hands SIGTERM to Python, which dies of it (143), long before the grace.
    assert exit_info == ExitInfo(exit_code=143, oom_killed=False)
    assert stopped_in < 5, f"stop took {stopped_in:.1f}s: SIGTERM did not reach the engine"
    assert rest == []
    assert failures.classify(exit_info, [])[0] != "out_of_memory"
    await run.stop(grace_s=1)  # stopping a stopped container is harmless


async def test_cleanup_removes_only_this_agents_exited_containers(
    make_runtime, storage, docker_client, test_image, agent_id
):
    runtime = make_runtime()
    ours = []
    for _ in range(2):
        spec = python_spec(storage, new_job(), "print('done')")
        run = await runtime.start(spec)
        assert (await run_to_end(run, 60))[1].exit_code == 0
        ours.append(f"llm-{spec.kind}-{spec.job_id}")
    running_spec = python_spec(storage, new_job(), "import time; time.sleep(600)")
    running = await runtime.start(running_spec)
    suffix = uuid.uuid4().hex[:6]
    usr = [docker.types.Mount("/usr", "/usr", type="bind", read_only=True)]
    # Not ours: a look-alike name without our label, another agent's exited container.
    strangers = {
        f"notllm-{suffix}": {},
        f"llm-train-other-{suffix}": {LABEL_AGENT: "another-agent", LABEL_JOB: "x", LABEL_KIND: "train"},
    }
    for name, labels in strangers.items():
        container = docker_client.containers.create(test_image, ["true"], name=name, labels=labels, mounts=usr)
        container.start()
        container.wait(timeout=60)

    await make_runtime(cleanup_delay_s=3600).cleanup()  # too young to go
    assert all(containers_named(docker_client, name) for name in ours)

    await runtime.cleanup()
    assert not any(containers_named(docker_client, name) for name in ours)
    for name in strangers:
        assert containers_named(docker_client, name), f"{name} is not ours and must stay"
    running_name = f"llm-{running_spec.kind}-{running_spec.job_id}"
    assert containers_named(docker_client, running_name)[0].status == "running"

    await running.stop(0)
    await asyncio.wait_for(running.wait(), 30)
    await runtime.cleanup()
    assert not containers_named(docker_client, running_name)
    for name in strangers:
        docker_client.containers.get(name).remove(force=True)


async def test_a_retry_of_a_job_replaces_its_old_container(make_runtime, storage):
    runtime = make_runtime(cleanup_delay_s=3600)
    spec = python_spec(storage, new_job(), "print('attempt')")
    for _ in range(2):  # the second start meets the first, exited container under the same name
        lines, exit_info = await run_to_end(await runtime.start(spec), 60)
        assert exit_info.exit_code == 0 and lines == [("stdout", "attempt")]


async def test_a_missing_image_is_image_missing(make_runtime, storage, docker_client):
    spec = python_spec(storage, new_job(), "print('never')")
    with pytest.raises(RuntimeStartError) as caught:
        await make_runtime(image="lf-with-optimum:missing").start(spec)
    assert caught.value.reason == "image_missing"
    assert "lf-with-optimum:missing" in caught.value.message and "build or pull" in caught.value.message
    assert not containers_named(docker_client, f"llm-{spec.kind}-{spec.job_id}")


async def test_a_gpu_request_on_a_host_without_gpus_is_gpu_unavailable(make_runtime, storage, docker_client):
    if shutil.which("nvidia-container-runtime-hook") or Path("/dev/nvidiactl").exists():
        pytest.skip("this host can hand GPUs to containers")
    spec = python_spec(storage, new_job(), "print('never')", gpu_ids=(0,), kind="train")
    with pytest.raises(RuntimeStartError) as caught:
        await make_runtime().start(spec)
    assert caught.value.reason == "gpu_unavailable", caught.value.message
    assert "NVIDIA Container Toolkit" in caught.value.message
    assert not containers_named(docker_client, f"llm-{spec.kind}-{spec.job_id}")
    reason, _ = failures.classify(
        ExitInfo(exit_code=-1, error=caught.value.message, error_reason=caught.value.reason), []
    )
    assert reason == "gpu_unavailable"


async def test_an_image_without_the_engine_is_engine_missing(make_runtime, storage):
    # With init=True the container starts (tini is there) and tini fails to exec the engine: 127.
    spec = python_spec(storage, new_job(), "")
    spec = type(spec)(**{**spec.__dict__, "command": ("llamafactory-cli-nowhere", "train", str(spec.config_path))})
    lines, exit_info = await run_to_end(await make_runtime().start(spec), 60)
    assert exit_info.exit_code == 127 and exit_info.error_reason == "engine_missing", (lines, exit_info)
    assert "no llamafactory-cli-nowhere" in exit_info.error
    reason, message = failures.classify(exit_info, [line for _, line in lines])
    assert reason == "engine_missing" and "LLMCT_DOCKER_IMAGE" in message
