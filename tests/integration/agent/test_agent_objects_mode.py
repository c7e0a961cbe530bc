"""An agent in `objects` storage mode, run as a real process with its own NATS user and its own base folder (it
shares no folder with the control plane, whose paths the dispatch is rendered with): it fetches the job's inputs
from the buckets, runs a stand-in engine that reads them at its own paths, uploads the checkpoint while the engine
still runs and the outputs and log before it reports the job finished; a second job on the same data starts with
no transfer; a resumed attempt gets its checkpoint from the bucket; a missing input fails the job, named."""

from __future__ import annotations

import json
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from services.common import contracts, objects, storage
from services.common.contracts import Buckets, JobInput
from services.common.security import new_id

from .helpers import appears, objects_agent, run, stored_input, text_of

pytestmark = pytest.mark.integration

CONTROL_BASE = "/srv/control-plane/cloud-llm"  # the services' HOST_BASE_PATH: nothing of it exists here

ENGINE = """#!{python}
import json, hashlib, os, sys, time
import yaml

config = yaml.safe_load(open(sys.argv[-1]))
out = config["output_dir"]
for path in config["reads"]:
    print("read", path, hashlib.sha256(open(path, "rb").read()).hexdigest(), flush=True)
print("datasets", sorted(json.load(open(os.path.join(config["dataset_dir"], "dataset_info.json")))), flush=True)
step = 1
if config.get("resume_from_checkpoint"):
    state = json.load(open(os.path.join(config["resume_from_checkpoint"], "trainer_state.json")))
    print("resumed from step", state["global_step"], flush=True)
    step = state["global_step"] + 1
checkpoint = os.path.join(out, "checkpoint-%d" % step)
os.makedirs(checkpoint)
open(os.path.join(checkpoint, "adapter_model.safetensors"), "wb").write(os.urandom(5000))
json.dump({{"global_step": step}}, open(os.path.join(checkpoint, "trainer_state.json"), "w"))
time.sleep(config["linger_s"])
open(os.path.join(out, "adapter_model.safetensors"), "wb").write(b"adapter")
json.dump({{"train_loss": 0.5}}, open(os.path.join(out, "all_results.json"), "w"))
os.symlink("/etc/hostname", os.path.join(out, "planted-link"))
print("done", flush=True)
"""


@pytest.fixture(scope="module")
def agent(stack_env, nats_server, tmp_path_factory):
    """An agent process in objects mode with the stand-in engine: (agent id, its own base)."""
    engine_bin = tmp_path_factory.mktemp("engine-bin")
    script = engine_bin / "llamafactory-cli"
    script.write_text(ENGINE.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    with objects_agent(stack_env, nats_server, tmp_path_factory, engine_bin) as started:
        yield started


def dataset_key(job_id: str) -> str:
    return f"tiny_{job_id}"


def order(job_id: str, inputs: list[JobInput], *, attempt: int = 1, linger_s: float = 0, resume: int | None = None):
    """A train job as the scheduler renders it in objects mode: paths under the control plane's base."""
    output = f"{CONTROL_BASE}/output/{job_id}"
    config = {
        "stage": "sft",
        "dataset_dir": f"{CONTROL_BASE}/data",
        "dataset": dataset_key(job_id),
        "output_dir": output,
        "reads": [f"{CONTROL_BASE}/{item.path}" for item in inputs if item.bucket == Buckets.DATASETS],
        "linger_s": linger_s,
    }
    if resume is not None:
        config["resume_from_checkpoint"] = f"{output}/checkpoint-{resume}"
    stage = contracts.EngineStage(
        name="train", command=("llamafactory-cli", "train"), config_yaml=yaml.safe_dump(config)
    )
    return contracts.JobDispatched(
        job_id=job_id,
        kind="train",
        stages=(stage,),
        output_dir=output,
        attempt=attempt,
        dispatched_at=datetime.now(UTC),
        inputs=tuple(inputs),
        files=(
            contracts.JobFile(
                path="data/dataset_info.json",
                text=json.dumps({dataset_key(job_id): {"file_name": "u/tiny.jsonl"}}),
                merge=True,
            ),
        ),
        storage_base=CONTROL_BASE,
    )


async def test_a_job_runs_from_the_buckets_on_an_agent_with_its_own_folder(agent, bus, js, tmp_path):
    agent_id, base = agent
    nc, _ = bus
    data = await stored_input(js, tmp_path, "data/u/tiny.jsonl", size=3 * 1024 * 1024)
    model = await stored_input(js, tmp_path, "models/tiny/config.json", data=b'{"model_type": "llama"}')
    job_id = new_id("job")
    checkpoint_state = Buckets.checkpoint_object(job_id, "checkpoint-1", "trainer_state.json")

    seen: list = []
    finished = await run(
        nc,
        js,
        agent_id,
        order(job_id, [data, model], linger_s=5),
        during=lambda: appears(js, *_in(checkpoint_state)),
        seen=seen,
    )
    assert (finished.state, finished.reason) == ("succeeded", None), (finished.message, finished.last_lines)
    fetched = [(e.input, e.done_bytes, e.total_bytes) for e in seen if isinstance(e, contracts.JobFetchProgressed)]
    total = data.size + model.size
    assert fetched[0] == ("tiny.jsonl", 0, total) and fetched[-1] == ("config.json", total, total), fetched
    assert isinstance(seen[0], contracts.JobStarted), "the job is started while its inputs come"
    assert finished.metrics == {"train_loss": 0.5}
    assert await objects.describe(
        js, Buckets.CHECKPOINTS, Buckets.checkpoint_object(job_id, "checkpoint-1", "adapter_model.safetensors")
    )
    assert (
        await text_of(js, tmp_path, Buckets.OUTPUTS, Buckets.job_object(job_id, "adapter_model.safetensors"))
        == "adapter"
    )
    log = await text_of(js, tmp_path, Buckets.OUTPUTS, Buckets.job_log_object(job_id))
    assert f"read {base}/data/u/tiny.jsonl {data.sha256}" in log, "the engine read the input at the agent's own path"
    assert f"'{dataset_key(job_id)}'" in log, "the job's dataset_info.json entries were written"
    assert "fetching tiny.jsonl (3.0 MB)" in log and "fetched tiny.jsonl: 3.0 MB in" in log
    assert "checkpoint-1 uploaded: 2 files" in log and "outputs uploaded: 2 files" in log
    assert "[platform] job succeeded" in log
    with pytest.raises(objects.ObjectMissing):  # a link the job planted is never followed
        await objects.describe(js, Buckets.OUTPUTS, Buckets.job_object(job_id, "planted-link"))
    with pytest.raises(objects.ObjectMissing):  # checkpoints go to their own bucket only
        await objects.describe(js, Buckets.OUTPUTS, Buckets.job_object(job_id, "checkpoint-1/trainer_state.json"))
    assert not Path(CONTROL_BASE).exists()

    second = new_id("job")
    finished = await run(nc, js, agent_id, order(second, [data, model]))
    assert finished.state == "succeeded", (finished.message, finished.last_lines)
    log = await text_of(js, tmp_path, Buckets.OUTPUTS, Buckets.job_log_object(second))
    seen = next(line for line in log.splitlines() if line.startswith("datasets "))
    assert dataset_key(job_id) in seen and dataset_key(second) in seen, "merged into the agent's dataset_info.json"
    assert "tiny.jsonl: cached (3.0 MB)" in log and "config.json: cached" in log and "fetching" not in log
    assert not (base / "data/u/tiny.jsonl").exists(), "a finished job's links go"


async def test_a_resumed_attempt_gets_its_checkpoint_from_the_bucket(agent, bus, js, tmp_path):
    agent_id, base = agent
    nc, _ = bus
    data = await stored_input(js, tmp_path, "data/u/tiny.jsonl", size=1000)
    job_id = new_id("job")
    assert (await run(nc, js, agent_id, order(job_id, [data]))).state == "succeeded"
    step, checkpoint = await storage.stored_checkpoint(js, job_id, f"output/{job_id}") or (0, ())
    assert step == 1 and len(checkpoint) == 2

    finished = await run(nc, js, agent_id, order(job_id, [data, *checkpoint], attempt=2, resume=1))
    assert finished.state == "succeeded", (finished.message, finished.last_lines)
    log = (await text_of(js, tmp_path, Buckets.OUTPUTS, Buckets.job_log_object(job_id))).split("attempt 2:")[1]
    assert log.count("fetching ") == 2, "the checkpoint's two files are fetched"
    assert "resumed from step 1" in log and "checkpoint-2 uploaded" in log
    assert "checkpoint-1 uploaded" not in log, "the checkpoint it came with is in the bucket already"


async def test_a_missing_input_fails_the_job_and_names_it(agent, bus, js, tmp_path):
    agent_id, _ = agent
    nc, _ = bus
    name = Buckets.dataset_object("cd" * 32)
    gone = JobInput(bucket=Buckets.DATASETS, name=name, sha256="cd" * 32, size=10, path="data/u/gone.jsonl")
    finished = await run(nc, js, agent_id, order(new_id("job"), [gone]))
    assert (finished.state, finished.reason) == ("failed", "input_missing")
    assert name in (finished.message or "") and "data/u/gone.jsonl" in (finished.message or "")


def _in(name: str) -> tuple[str, str]:
    return Buckets.CHECKPOINTS, name
