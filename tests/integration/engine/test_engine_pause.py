"""The pause hook (services/agent/engine/sitecustomize.py) in the real engine: `llamafactory-cli train`, unchanged,
with the hook's folder first on PYTHONPATH. Once the pause file appears the trainer saves `checkpoint-<step>` at
the step it is on and stops, and the paused file names that step: in one process (exit 75) and under torchrun,
as LLaMA-Factory launches it on several devices (here two CPU ranks on gloo: the ranks agree on the step; exit 0)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from services.agent import pausing

from .helpers import TRAIN_TIMEOUT_S, engine_bin, engine_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def config_for(model: Path, data: Path, output: Path, **extra) -> dict:
    return {
        "model_name_or_path": str(model),
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": 8,
        "lora_target": "all",
        "dataset_dir": str(data),
        "dataset": "tiny_sft",
        "template": "default",
        "cutoff_len": 256,
        "overwrite_cache": True,
        "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0,
        "output_dir": str(output),
        "logging_steps": 1,
        "save_steps": 100000,
        "plot_loss": False,
        "report_to": "none",
        "per_device_train_batch_size": 2,
        "learning_rate": 1.0e-3,
        "max_steps": 100000,
        "bf16": False,
        "fp16": False,
        **extra,
    }


def paused_run(tmp_path: Path, tiny: tuple[Path, Path], env: dict[str, str], **extra) -> tuple[int, int, Path]:
    """Train until step 3 is logged, ask for a pause; (exit code, the step it said, its output folder)."""
    model, data = tiny
    output = tmp_path / "out"
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(config_for(model, data, output, **extra)))
    hook = pausing.place_hook(config)
    environment = {**engine_env(), **env, **pausing.environment(output, hook, {})}
    environment["PATH"] = f"{engine_bin()}:{os.environ['PATH']}"  # torchrun, as the process runtime puts it
    log = (tmp_path / "engine.log").open("w")
    process = subprocess.Popen(
        [str(engine_bin() / "llamafactory-cli"), "train", str(config)],
        cwd=tmp_path,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + TRAIN_TIMEOUT_S
        trainer_log = output / "trainer_log.jsonl"
        while not trainer_log.exists() or len(trainer_log.read_text().splitlines()) < 3:
            assert process.poll() is None, (tmp_path / "engine.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "no step logged in time"
            time.sleep(0.1)
        assert pausing.ask(output)
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()
        log.close()
    step = pausing.paused_step(output)
    assert step is not None, (tmp_path / "engine.log").read_text()[-4000:]
    return code, step, output


def test_a_pause_saves_the_current_step_and_exits_75(tiny, tmp_path):
    code, step, output = paused_run(tmp_path, tiny, {})
    assert code == pausing.PAUSED_EXIT
    state = json.loads((output / f"checkpoint-{step}" / "trainer_state.json").read_text())
    assert state["global_step"] == step >= 3
    assert (output / f"checkpoint-{step}" / "tokenizer_config.json").is_file(), "LLaMA-Factory's on-save files too"
    assert not (output / "adapter_model.safetensors").exists(), "stopped there: not trained to the end"
    assert [p.name for p in output.glob("checkpoint-*")] == [f"checkpoint-{step}"]


def test_under_torchrun_every_rank_saves_the_same_step_and_the_launcher_ends_well(tiny, tmp_path):
    env = {"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"}
    code, step, output = paused_run(tmp_path, tiny, env, ddp_backend="gloo")
    assert code == 0, (tmp_path / "engine.log").read_text()[-4000:]
    folder = output / f"checkpoint-{step}"
    assert json.loads((folder / "trainer_state.json").read_text())["global_step"] == step >= 3
    assert (folder / "rng_state_0.pth").is_file() and (folder / "rng_state_1.pth").is_file(), "both ranks saved"
    assert "ChildFailedError" not in (tmp_path / "engine.log").read_text()
