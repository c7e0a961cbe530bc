"""Job specs for the docker tests: the tiny LoRA run of docs/engine.md, and short Python programs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import yaml

from services.agent.runtimes.base import JobSpec
from services.common import contracts
from services.common.contracts import Subjects

ENGINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
    "DISABLE_VERSION_CHECK": "1",
}


def new_job() -> str:
    return f"job_{uuid.uuid4().hex[:10]}"


def lora_spec(storage, job_id: str, **extra) -> JobSpec:
    """A 10-step LoRA SFT of the tiny model (the config of docs/engine.md), as the runner would give it."""
    output = storage.output / job_id
    config = {
        "model_name_or_path": str(storage.models / "tiny"),
        "trust_remote_code": False,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "lora_target": "all",
        "dataset_dir": str(storage.data),
        "dataset": "tiny_sft",
        "template": "default",
        "cutoff_len": 256,
        "overwrite_cache": True,
        "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0,
        "output_dir": str(output),
        "overwrite_output_dir": True,
        "logging_steps": 1,
        "save_steps": 5,
        "plot_loss": False,
        "report_to": "none",
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1.0e-3,
        "max_steps": 10,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 1,
        "bf16": False,
        "fp16": False,
        **extra,
    }
    path = storage.temp / f"{job_id}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return JobSpec(
        job_id=job_id,
        kind="train",
        command=("llamafactory-cli", "train", str(path)),
        config_path=path,
        output_dir=output,
        env={**ENGINE_ENV, "HF_HOME": str(storage.hf_cache)},
    )


def python_spec(storage, job_id: str, code: str, **fields) -> JobSpec:
    """A short Python program in the engine image (the engine venv's interpreter)."""
    path = storage.temp / f"{job_id}.yaml"
    path.write_text("{}\n")
    return JobSpec(
        job_id=job_id,
        kind=fields.pop("kind", "eval"),
        command=("python", "-c", code),
        config_path=path,
        output_dir=storage.output / job_id,
        env=dict(ENGINE_ENV),
        **fields,
    )


async def dispatch(
    js,
    agent_id: str,
    job_id: str,
    config: dict,
    output_dir,
    *,
    kind: str = "train",
    commands: tuple[tuple[str, ...], ...] = (("llamafactory-cli", "train"),),
) -> None:
    """Publish a JobDispatched to the agent's queue as the scheduler does: one stage per command."""
    stages = tuple(
        contracts.EngineStage(
            name=f"stage{i + 1}" if len(commands) > 1 else kind, command=command, config_yaml=yaml.safe_dump(config)
        )
        for i, command in enumerate(commands)
    )
    order = contracts.JobDispatched(
        job_id=job_id, kind=kind, stages=stages, output_dir=str(output_dir), dispatched_at=datetime.now(UTC)
    )
    await js.publish(Subjects.job_dispatch(agent_id), contracts.encode(order))


async def events_of(nc, job_id: str) -> asyncio.Queue:
    queue: asyncio.Queue = asyncio.Queue()

    async def on_event(msg):
        await queue.put(contracts.decode(msg.data))

    await nc.subscribe(Subjects.job_status_of(job_id), cb=on_event)
    return queue


async def until_finished(queue: asyncio.Queue, timeout: float = 300) -> list:
    seen = []
    while not seen or not isinstance(seen[-1], contracts.JobFinished):
        seen.append(await asyncio.wait_for(queue.get(), timeout))
    return seen


def config_of(spec) -> dict:
    return yaml.safe_load(spec.config_path.read_text())
