"""The real engine in `shared` storage mode: an agent process trains the tiny Llama (LoRA) in a folder the services
read as it is. It tells of each checkpoint once whole (JobCheckpointSaved: its step, the losses its trainer state
logged), none twice. A pause (JobCancelRequested with pause_grace_s) makes the engine (services/agent/engine/
pausable_train.py) save a checkpoint at the step it is on and stop, told as `paused at step N (checkpoint saved)`;
the next attempt resumes from it. A pause whose checkpoint does not come in time stops the job as a cancel."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import yaml

from llmct.tiny.data import SFT_NAME, write_tiny_datasets
from services.common import contracts
from services.common.contracts import Subjects
from services.common.security import new_id

from .helpers import run, shared_agent

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
ENGINE_BIN = ROOT / ".venv-engine" / "bin"


@pytest.fixture(scope="module")
def agent(stack_env, nats_server, tmp_path_factory):
    if not (ENGINE_BIN / "llamafactory-cli").exists():
        pytest.fail(f"the engine environment is missing ({ENGINE_BIN}): run engine/install.sh", pytrace=False)
    with shared_agent(stack_env, nats_server, tmp_path_factory, ENGINE_BIN) as started:
        yield started


@pytest.fixture(scope="module")
def tiny(agent) -> Path:
    """The tiny model (built by the engine's interpreter) and the tiny datasets, in the agent's base."""
    _, base = agent
    model = base / "models" / "tiny"
    subprocess.run(
        [str(ENGINE_BIN / "python"), str(ROOT / "llmct" / "tiny" / "make_model.py"), "--out", str(model)],
        check=True,
        capture_output=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
    )
    write_tiny_datasets(base / "data")
    return model


def train_order(base: Path, model: Path, **overrides) -> contracts.JobDispatched:
    job_id = new_id("job")
    output = Path(overrides.pop("output_dir", base / "output" / job_id))
    config = {
        "model_name_or_path": str(model),
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": 8,
        "lora_target": "all",
        "dataset_dir": str(base / "data"),
        "dataset": SFT_NAME,
        "template": "default",
        "cutoff_len": 256,
        "overwrite_cache": True,
        "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0,
        "output_dir": str(output),
        "logging_steps": 1,
        "save_steps": 3,
        "plot_loss": False,
        "report_to": "none",
        "per_device_train_batch_size": 2,
        "learning_rate": 1.0e-3,
        "max_steps": 10,
        "bf16": False,
        "fp16": False,
        **overrides,
    }
    command = ("llamafactory-cli", "train")
    stage = contracts.EngineStage(name="train", command=command, config_yaml=yaml.safe_dump(config))
    return contracts.JobDispatched(
        job_id=job_id, kind="train", stages=(stage,), output_dir=str(output), dispatched_at=datetime.now(UTC)
    )


async def test_each_checkpoint_is_told_once_whole_in_shared_mode(agent, bus, tiny):
    agent_id, base = agent
    nc, js = bus
    order = train_order(base, tiny)
    seen: list = []
    finished = await run(nc, js, agent_id, order, timeout=300, seen=seen)
    assert (finished.state, finished.reason) == ("succeeded", None), (finished.message, finished.last_lines)

    saved = [e for e in seen if isinstance(e, contracts.JobCheckpointSaved)]
    assert [e.step for e in saved] == [3, 6, 9, 10], "each save_steps checkpoint, and the last, once"
    assert {(e.job_id, e.agent_id, e.attempt) for e in saved} == {(order.job_id, agent_id, 1)}
    assert all(e.train_loss and e.train_loss > 0 and e.epoch for e in saved), "losses from its trainer state"
    for event in saved:
        assert (Path(order.output_dir) / f"checkpoint-{event.step}" / "tokenizer_config.json").is_file()


async def progressed_to(seen: list, step: int) -> float:
    """When the job logged `step` (the loop's clock), waiting for it."""
    while not any(isinstance(e, contracts.JobProgressed) and e.step >= step for e in seen):
        await asyncio.sleep(0.05)
    return asyncio.get_running_loop().time()


async def test_a_pause_saves_a_checkpoint_at_the_current_step_and_the_resume_goes_on_from_it(agent, bus, tiny):
    agent_id, base = agent
    nc, js = bus
    # No checkpoint on the trainer's schedule before step 1000: the one a pause leaves is the pause's own.
    order = train_order(base, tiny, max_steps=3000, save_steps=1000)
    seen: list = []

    async def pause_at_step_5() -> float:
        await progressed_to(seen, 5)
        pause = contracts.JobCancelRequested(job_id=order.job_id, pause_grace_s=60)
        await nc.publish(Subjects.job_cancel(order.job_id), contracts.encode(pause))
        return asyncio.get_running_loop().time()

    finished = await run(nc, js, agent_id, order, during=pause_at_step_5, timeout=300, seen=seen)
    assert (finished.state, finished.reason) == ("cancelled", "paused"), (finished.message, finished.last_lines)
    step = int(finished.message.split("paused at step ")[1].split(" ")[0])
    assert finished.message == f"paused at step {step} (checkpoint saved)"
    assert 5 <= step < 1000, "mid-epoch, at the step it was on: not one of the trainer's scheduled saves"
    folder = Path(order.output_dir) / f"checkpoint-{step}"
    assert json.loads((folder / "trainer_state.json").read_text())["global_step"] == step
    assert (folder / "adapter_model.safetensors").is_file() and (folder / "tokenizer_config.json").is_file()
    assert [e.step for e in seen if isinstance(e, contracts.JobCheckpointSaved)] == [step], "told, once"
    assert not (Path(order.output_dir) / "adapter_model.safetensors").exists(), "stopped, not trained to the end"
    assert not list(Path(order.output_dir).glob(".llmct-*")), "the pause's files are gone"

    # The resume (as POST /api/jobs/{id}/resume renders it: the same job, attempt 2, from the checkpoint).
    resumed = train_order(
        base, tiny, max_steps=step + 4, save_steps=1000, resume_from_checkpoint=str(folder), output_dir=order.output_dir
    )
    resumed = msgspec.structs.replace(resumed, job_id=order.job_id, output_dir=order.output_dir, attempt=2)
    again: list = []
    finished = await run(nc, js, agent_id, resumed, timeout=300, seen=again)
    assert (finished.state, finished.reason) == ("succeeded", None), (finished.message, finished.last_lines)
    steps = [e.step for e in again if isinstance(e, contracts.JobProgressed)]
    # trainer_log.jsonl keeps the first attempt's lines (read again), then the resumed steps; from scratch, it would
    # start again at 1 (the last step may be logged twice: its loss, then the run's totals)
    assert sorted(set(steps)) == list(range(1, step + 5)) and steps.count(1) == 1, "it went on from the paused step"
    assert (Path(order.output_dir) / "adapter_model.safetensors").is_file()


async def test_a_pause_with_no_checkpoint_in_its_grace_time_stops_as_a_cancel_and_says_so(agent, bus, tiny):
    agent_id, base = agent
    nc, js = bus
    order = train_order(base, tiny, max_steps=3000, save_steps=1000)
    seen: list = []

    async def pause_too_briefly() -> float:
        await progressed_to(seen, 3)
        pause = contracts.JobCancelRequested(job_id=order.job_id, pause_grace_s=0.001, grace_s=5)
        await nc.publish(Subjects.job_cancel(order.job_id), contracts.encode(pause))
        return asyncio.get_running_loop().time()

    pausing = asyncio.create_task(pause_too_briefly())  # the stop follows at once: not run's `during`
    finished = await run(nc, js, agent_id, order, timeout=300, seen=seen)
    assert pausing.done()
    assert (finished.state, finished.reason) == ("cancelled", "cancelled"), finished.message
    assert finished.message is not None and finished.message.startswith("paused without a new checkpoint")
