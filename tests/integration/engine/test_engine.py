"""The real engine: .venv-engine's LLaMA-Factory trains the locally made tiny Llama on the CPU.

Needs `engine/install.sh` to have run (CI runs it); a missing engine fails here instead of skipping,
so a broken install can never pass as green.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .helpers import ROOT, TRAIN_TIMEOUT_S, engine_bin, engine_env, run_engine

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def lora_config(model: Path, data: Path, output: Path, **extra) -> dict:
    """The LoRA SFT config documented in docs/engine.md, with the tiny model and dataset."""
    return {
        "model_name_or_path": str(model),
        "trust_remote_code": False,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "lora_target": "all",
        "dataset_dir": str(data),
        "dataset": "tiny_sft",
        "template": "default",
        "cutoff_len": 256,
        "overwrite_cache": True,
        "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0,
        "output_dir": str(output),
        "overwrite_output_dir": True,
        "logging_steps": 1,
        "save_steps": 10,
        "plot_loss": False,
        "report_to": "none",
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1.0e-3,
        "max_steps": 20,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 2,
        "bf16": False,
        "fp16": False,
        "include_num_input_tokens_seen": "non_padding",  # as the platform renders every training job
        **extra,
    }


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def lora_run(tiny, tmp_path_factory) -> Path:
    """One real 20-step LoRA SFT through the engine's llamafactory-cli; its output dir."""
    model, data = tiny
    work = tmp_path_factory.mktemp("lora")
    config = write_config(work / "lora.yaml", lora_config(model, data, work / "out"))
    run_engine([str(engine_bin() / "llamafactory-cli"), "train", str(config)], work)
    return work / "out"


def test_engine_env_is_cpu_torch_without_torchvision():
    check = (
        "import importlib.util, torch, torchaudio, transformers, llamafactory.train.tuner;"
        "print(torch.__version__, torchaudio.__version__, importlib.util.find_spec('torchvision') is None)"
    )
    out = run_engine([str(engine_bin() / "python"), "-c", check], ROOT, 120).stdout.split()
    assert out[-3:] == ["2.13.0+cpu", "2.13.0+textonly", "True"]


def test_tiny_model_and_datasets_are_usable(tiny):
    model, data = tiny
    config = json.loads((model / "config.json").read_text())
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"]) == ("llama", 64, 2)
    assert 1900 <= config["vocab_size"] <= 2100
    assert (model / "model.safetensors").exists() and (model / "tokenizer.json").exists()
    info = json.loads((data / "dataset_info.json").read_text())
    assert {"tiny_sft", "tiny_pt"} <= info.keys()
    examples = json.loads((data / "tiny_sft.json").read_text())
    assert len(examples) == 64 and {"instruction", "input", "output"} <= examples[0].keys()


def test_lora_sft_writes_the_adapter(lora_run):
    assert (lora_run / "adapter_model.safetensors").stat().st_size > 0
    adapter = json.loads((lora_run / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA" and adapter["r"] == 8
    assert (lora_run / "checkpoint-10" / "adapter_model.safetensors").exists()
    assert (lora_run / "checkpoint-20" / "adapter_model.safetensors").exists()


def test_lora_sft_logs_every_step_with_a_loss(lora_run):
    lines = [json.loads(line) for line in (lora_run / "trainer_log.jsonl").read_text().splitlines() if line]
    steps = [line for line in lines if "loss" in line]
    assert [line["current_steps"] for line in steps] == list(range(1, 21))
    assert all(line["total_steps"] == 20 for line in lines)
    assert all(isinstance(line["loss"], float) and line["loss"] > 0 for line in steps)
    assert lines[-1]["current_steps"] == 20 and lines[-1]["percentage"] == 100.0
    assert json.loads((lora_run / "all_results.json").read_text())["train_loss"] > 0


def test_lora_sft_counts_the_tokens_it_trains_on(lora_run):
    """`total_tokens` with every step (a job's progress), `num_input_tokens_seen` at the end (its trained_tokens)."""
    lines = [json.loads(line) for line in (lora_run / "trainer_log.jsonl").read_text().splitlines() if line]
    counts = [line["total_tokens"] for line in lines if "loss" in line]
    assert len(counts) == 20 and counts[0] > 0 and counts == sorted(counts) and len(set(counts)) == 20
    final = json.loads((lora_run / "all_results.json").read_text())["num_input_tokens_seen"]
    assert final == counts[-1] == lines[-1]["total_tokens"]


def test_sigterm_stops_training_at_once_and_keeps_checkpoints(tiny, tmp_path):
    model, data = tiny
    config = write_config(
        tmp_path / "long.yaml", lora_config(model, data, tmp_path / "out", max_steps=5000, save_steps=2)
    )
    log = (tmp_path / "engine.log").open("w")
    process = subprocess.Popen(
        [str(engine_bin() / "llamafactory-cli"), "train", str(config)],
        cwd=tmp_path,
        env=engine_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + TRAIN_TIMEOUT_S
        while not (tmp_path / "out" / "checkpoint-2" / "trainer_state.json").exists():
            assert process.poll() is None, (tmp_path / "engine.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.2)
        stopped_at = time.monotonic()
        os.killpg(process.pid, signal.SIGTERM)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
    assert code == -signal.SIGTERM, f"exit {code}"
    assert time.monotonic() - stopped_at < 10
    assert (tmp_path / "out" / "checkpoint-2" / "adapter_model.safetensors").exists()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
