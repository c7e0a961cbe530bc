"""The real engine in `objects` storage mode: an agent process with its own base folder trains the tiny Llama
(LoRA, 10 steps, a checkpoint every 5, `save_total_limit: 1`) from a model and a dataset it fetched from the buckets
at paths the dispatch rendered under the control plane's base; it reports progress, leaves its adapter, results,
trainer log and job log in llmct-outputs and its last whole checkpoint (with the tokenizer files LLaMA-Factory adds
after the trainer state) in llmct-checkpoints, the rotated one gone; it tells of each checkpoint once stored
(JobCheckpointSaved) and of the rotated one gone (JobCheckpointRemoved)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from llmct.tiny.data import SFT_NAME, write_tiny_datasets
from services.common import contracts, objects
from services.common.contracts import Buckets, JobInput
from services.common.security import new_id
from tests.helpers import unique

from .helpers import objects_agent, run, text_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
ENGINE_BIN = ROOT / ".venv-engine" / "bin"
CONTROL_BASE = "/srv/control-plane/cloud-llm"


@pytest.fixture(scope="module")
def agent(stack_env, nats_server, tmp_path_factory):
    if not (ENGINE_BIN / "llamafactory-cli").exists():
        pytest.fail(f"the engine environment is missing ({ENGINE_BIN}): run engine/install.sh", pytrace=False)
    with objects_agent(stack_env, nats_server, tmp_path_factory, ENGINE_BIN) as started:
        yield started


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny model (built by the engine's interpreter) and the tiny SFT dataset file, on the control plane."""
    base = tmp_path_factory.mktemp("control-plane")
    model = base / "model"
    subprocess.run(
        [str(ENGINE_BIN / "python"), str(ROOT / "llmct" / "tiny" / "make_model.py"), "--out", str(model)],
        check=True,
        capture_output=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
    )
    write_tiny_datasets(base / "data")
    return model, base / "data" / f"{SFT_NAME}.json"


async def put(js, bucket: str, name: str, path: Path, at: str) -> JobInput:
    stored = await objects.put_file(js, bucket, name, path)
    return JobInput(bucket=bucket, name=name, sha256=stored.sha256, size=stored.size, path=at)


async def test_the_tiny_model_trains_from_the_buckets(agent, bus, js, tiny, tmp_path):
    agent_id, base = agent
    nc, _ = bus
    model, dataset = tiny
    model_id, key = unique("mdl"), unique("tiny_sft")
    inputs = [
        await put(js, Buckets.MODELS, f"{model_id}/{file.name}", file, f"models/{model_id}/{file.name}")
        for file in sorted(model.iterdir())
    ]
    digest = objects.file_sha256(dataset)
    inputs.append(
        await put(js, Buckets.DATASETS, Buckets.dataset_object(digest), dataset, f"data/u_test/{digest}.json")
    )
    job_id = new_id("job")
    output = f"{CONTROL_BASE}/output/{job_id}"
    config = {
        "model_name_or_path": f"{CONTROL_BASE}/models/{model_id}",
        "trust_remote_code": False,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": 8,
        "lora_target": "all",
        "dataset_dir": f"{CONTROL_BASE}/data",
        "dataset": key,
        "template": "default",
        "cutoff_len": 256,
        "overwrite_cache": True,
        "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0,
        "output_dir": output,
        "overwrite_output_dir": True,
        "logging_steps": 1,
        "save_steps": 5,
        "save_total_limit": 1,
        "plot_loss": False,
        "report_to": "none",
        "per_device_train_batch_size": 2,
        "learning_rate": 1.0e-3,
        "max_steps": 10,
        "bf16": False,
        "fp16": False,
    }
    order = contracts.JobDispatched(
        job_id=job_id,
        kind="train",
        stages=(
            contracts.EngineStage(
                name="train", command=("llamafactory-cli", "train"), config_yaml=yaml.safe_dump(config)
            ),
        ),
        output_dir=output,
        dispatched_at=datetime.now(UTC),
        inputs=tuple(inputs),
        files=(
            contracts.JobFile(
                path="data/dataset_info.json",
                text=json.dumps({key: {"file_name": f"u_test/{digest}.json"}}),
                merge=True,
            ),
        ),
        storage_base=CONTROL_BASE,
    )
    seen: list = []
    finished = await run(nc, js, agent_id, order, timeout=300, seen=seen)
    assert (finished.state, finished.reason) == ("succeeded", None), (finished.message, finished.last_lines)
    assert [e.step for e in seen if isinstance(e, contracts.JobProgressed)][-1] == 10
    saved = [e for e in seen if isinstance(e, contracts.JobCheckpointSaved)]
    # checkpoint-5 may be deleted (save_total_limit) before it settled: then it is neither stored nor told
    assert [e.step for e in saved] in ([5, 10], [10]) and {(e.agent_id, e.attempt) for e in saved} == {(agent_id, 1)}
    assert all(e.train_loss and e.train_loss > 0 and e.epoch for e in saved), "losses from its trainer state"
    removed = [e.step for e in seen if isinstance(e, contracts.JobCheckpointRemoved)]
    assert removed == [e.step for e in saved if e.step != 10], "a stored one the trainer deleted is told gone"
    assert finished.metrics["train_loss"] > 0

    for relative in ("adapter_model.safetensors", "adapter_config.json", "all_results.json", "trainer_log.jsonl"):
        await objects.describe(js, Buckets.OUTPUTS, Buckets.job_object(job_id, relative))
    last = lambda relative: Buckets.checkpoint_object(job_id, "checkpoint-10", relative)
    for relative in ("trainer_state.json", "adapter_model.safetensors", "optimizer.pt", "tokenizer_config.json"):
        await objects.describe(js, Buckets.CHECKPOINTS, last(relative))
    with pytest.raises(objects.ObjectMissing):  # save_total_limit: the trainer deleted it, the bucket too
        await objects.describe(
            js, Buckets.CHECKPOINTS, Buckets.checkpoint_object(job_id, "checkpoint-5", "trainer_state.json")
        )
    log = await text_of(js, tmp_path, Buckets.OUTPUTS, Buckets.job_log_object(job_id))
    assert f"{base}/output/{job_id}/checkpoint-5" in log, "the trainer saved it (at the agent's own path)"
    assert "fetched model.safetensors" in log and "checkpoint-10 uploaded" in log and "job succeeded" in log
    assert not (base / "output" / job_id).exists(), "the agent keeps no copy once the outputs are in the store"
