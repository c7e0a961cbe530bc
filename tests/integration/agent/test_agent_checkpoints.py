"""The real engine in `shared` storage mode: an agent process trains the tiny Llama (LoRA, 10 steps, a checkpoint
every 3) in a folder the services read as it is; it tells of each checkpoint once whole (JobCheckpointSaved: its
step, the losses its trainer state logged), none twice."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from llmct.tiny.data import SFT_NAME, write_tiny_datasets
from services.common import contracts
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
    output = base / "output" / job_id
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
