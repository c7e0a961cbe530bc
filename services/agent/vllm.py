"""vLLM as a deployment's engine: whether this agent has it, its command line from the stage's YAML, its load.

The stage's YAML is LLaMA-Factory's inference arguments whichever engine serves (the scheduler renders one kind);
when vLLM serves, the agent reads from it what vLLM understands: the model, a deployed adapter (preloaded under the
deployment's id), the generation defaults, `infer_dtype`. LLaMA-Factory's `template` has no vLLM equivalent: vLLM
formats chats with the tokenizer's own chat template. vLLM runs from its own environment (LLMCT_VLLM_BIN), with
the process runtime only: its key in the environment (never on the command line, which `ps` shows), on loopback.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.common.contracts import ServeOptions, ServingEngine

from .adapters import AdapterLoadFailed

log = logging.getLogger(__name__)

SERVER_MODULE = ("python", "-m", "vllm.entrypoints.openai.api_server")
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the ranks vLLM accepts for --max-lora-rank
# LLaMA-Factory's generation keys that vLLM's --override-generation-config takes as defaults a request's own values
# override. Not max_new_tokens: vLLM takes that one as a cap on every request's max_tokens, so the agent adds it to a
# request that names no limit of its own instead (default_max_tokens).
GENERATION_KEYS = ("temperature", "top_p", "top_k", "repetition_penalty")
DTYPES = ("float16", "bfloat16", "float32")
ADAPTER_LOAD_TIMEOUT_S = 300.0
_METRIC = re.compile(r"^(vllm:num_requests_running|vllm:num_requests_waiting|vllm:kv_cache_usage_perc)\{[^}]*\} (\S+)$")


@dataclass(frozen=True, kw_only=True)
class VllmSetup:
    """Where vLLM is on this agent, and what it gets on a host without GPUs (AgentSettings)."""

    bin: Path
    cpu_kv_cache_bytes: int = 256 * 1024 * 1024
    cpu_max_model_len: int = 1024


class EngineUnavailable(Exception):
    """A deployment asks for an engine this agent does not have."""


class BadServeConfig(Exception):
    """The stage's YAML asks for something vLLM cannot serve."""


def has_vllm(bin_dir: Path) -> bool:
    """Whether `bin_dir` holds a Python with vLLM installed: a look at its files, no import (checked once)."""
    if not (bin_dir / "python").exists():
        return False
    return any(bin_dir.parent.glob("lib/python3*/site-packages/vllm/__init__.py"))


def serving_engines(runtime: str, vllm: VllmSetup | None) -> tuple[ServingEngine, ...]:
    """The engines this agent serves with: vLLM where it is installed and engines run as processes here."""
    return ("vllm", "llamafactory") if vllm is not None and runtime == "process" else ("llamafactory",)


def resolve_engine(choice: str, engines: tuple[str, ...]) -> ServingEngine:
    """The engine a deployment runs on: `auto` is vLLM where this agent has it, else LLaMA-Factory's server."""
    if choice == "auto":
        return "vllm" if "vllm" in engines else "llamafactory"
    if choice == "vllm" and "vllm" not in engines:
        raise EngineUnavailable(
            "the deployment asks for vLLM and this agent has none (LLMCT_VLLM_BIN holds no vLLM, or its runtime is "
            "not `process`): deploy with engine auto or llamafactory, or run engine/vllm/install.sh on the agent"
        )
    return "llamafactory" if choice == "llamafactory" else "vllm"


@dataclass(frozen=True)
class ServedNames:
    """What vLLM serves: the base under one name, and a deployed adapter (preloaded) under the deployment's id."""

    model: str  # model_name_or_path
    base: str
    adapter: str | None = None
    adapter_path: str | None = None

    @property
    def default(self) -> str:
        """The model a request without an adapter of its own goes to: the deployed model."""
        return self.adapter or self.base


def served_names(deployment_id: str, config: Mapping[str, Any]) -> ServedNames:
    """The deployment's id names the deployed model; a deployed adapter takes it, its base another name.
    BadServeConfig when the YAML names no model, or more than one adapter (vLLM applies one per request)."""
    model = config.get("model_name_or_path")
    if not isinstance(model, str) or not model:
        raise BadServeConfig("it names no model_name_or_path")
    adapter = config.get("adapter_name_or_path")
    if not adapter:
        return ServedNames(model=model, base=deployment_id)
    if not isinstance(adapter, str) or "," in adapter:
        raise BadServeConfig("vLLM serves one adapter on a base: adapter_name_or_path must name one folder")
    return ServedNames(model=model, base=f"{deployment_id}-base", adapter=deployment_id, adapter_path=adapter)


def vllm_command(
    config: Mapping[str, Any],
    options: ServeOptions,
    names: ServedNames,
    *,
    port: int,
    gpu_count: int,
    setup: VllmSetup,
) -> tuple[str, ...]:
    """vLLM's OpenAI server for the stage's YAML (`config`, its model and adapter read as `names`): every value as
    `--flag=value`, so that none can be read as a flag of its own."""
    model = names.model
    preloaded = 1 if names.adapter else 0
    slots = options.adapter_slots + preloaded
    args = [
        f"--model={model}",
        f"--served-model-name={names.base}",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--dtype={_dtype(config, gpu_count)}",
        f"--max-num-seqs={options.max_in_flight}",
        "--enable-lora",
        f"--max-loras={slots}",
        f"--max-cpu-loras={slots}",
        f"--max-lora-rank={lora_rank(options.max_lora_rank)}",
        "--disable-uvicorn-access-log",  # a line per request would drown the deployment's log
    ]
    max_model_len = options.max_model_len or (None if gpu_count else cpu_max_model_len(model, setup))
    if max_model_len:
        args.append(f"--max-model-len={max_model_len}")
    if gpu_count:
        args += _gpu_args(config, gpu_count)
    else:
        args.append(f"--kv-cache-memory-bytes={setup.cpu_kv_cache_bytes}")
    if generation := generation_defaults(config):
        args.append(f"--override-generation-config={json.dumps(generation)}")
    if names.adapter:
        module = {"name": names.adapter, "path": names.adapter_path, "base_model_name": names.base}
        args.append(f"--lora-modules={json.dumps(module)}")
    return (*SERVER_MODULE, *args)


def vllm_environment(api_key: str, hub: str | None) -> dict[str, str]:
    """What vLLM reads besides its arguments: the key, run-time adapter loading, no usage reports sent out."""
    env = {
        "VLLM_API_KEY": api_key,
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_DO_NOT_TRACK": "1",
    }
    if hub == "modelscope":
        env["VLLM_USE_MODELSCOPE"] = "True"
    return env


def lora_rank(asked: int) -> int:
    """The smallest rank vLLM accepts that holds `asked`."""
    return next((rank for rank in LORA_RANKS if rank >= asked), LORA_RANKS[-1])


def generation_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """The deployment's generation defaults as vLLM's generation config (a request's own values win)."""
    generation = {key: config[key] for key in GENERATION_KEYS if config.get(key) is not None}
    if config.get("do_sample") is False:
        generation["temperature"] = 0.0
    return generation


def default_max_tokens(config: Mapping[str, Any] | None) -> int | None:
    """The deployment's `max_new_tokens`: the `max_tokens` of a request that names none."""
    value = (config or {}).get("max_new_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def cpu_max_model_len(model: str, setup: VllmSetup) -> int:
    """The context length on a host without GPUs: the setting's, or the model's own when that is shorter (vLLM
    refuses a longer one than the model's)."""
    try:
        own = json.loads((Path(model) / "config.json").read_text()).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        own = None
    return min(setup.cpu_max_model_len, own) if isinstance(own, int) and own > 0 else setup.cpu_max_model_len


def engine_load(metrics: str) -> tuple[int, int, float | None]:
    """(running, waiting, KV-cache use in %) from vLLM's Prometheus text (/metrics)."""
    found: dict[str, float] = {}
    for line in metrics.splitlines():
        match = _METRIC.match(line)
        if match:
            found[match.group(1)] = found.get(match.group(1), 0.0) + float(match.group(2))
    kv = found.get("vllm:kv_cache_usage_perc")
    return (
        int(found.get("vllm:num_requests_running", 0)),
        int(found.get("vllm:num_requests_waiting", 0)),
        None if kv is None else round(kv * 100, 2),
    )


class VllmControl:
    """The agent's own calls to its vLLM server (its loopback port, its key): adapters in and out (the pool's
    `adapters.Engine`), and its load."""

    def __init__(self, http: httpx.AsyncClient, note: Callable[[str], None], slots: int):
        self.http, self.note, self.slots = http, note, slots

    async def load_adapter(self, name: str, path: str, replace: bool) -> None:
        """vLLM's run-time LoRA loading; AdapterLoadFailed with its reason."""
        body = {"lora_name": name, "lora_path": path, "load_inplace": replace}
        try:
            response = await self.http.post("/v1/load_lora_adapter", json=body, timeout=ADAPTER_LOAD_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise AdapterLoadFailed(f"the model server failed: {type(exc).__name__}") from exc
        if response.status_code == 200:
            self.note(f"adapter {name} loaded")
            return
        reason = _engine_reason(response)
        if response.status_code == 400 and "already been loaded" in reason and not replace:
            return
        self.note(f"adapter {name} not loaded: {reason}")
        raise AdapterLoadFailed(reason)

    async def unload_adapter(self, name: str) -> None:
        try:
            response = await self.http.post("/v1/unload_lora_adapter", json={"lora_name": name}, timeout=60)
            if response.status_code == 200:
                self.note(f"adapter {name} unloaded (least recently used beyond {self.slots} slots)")
        except httpx.HTTPError:
            log.warning("adapter %s not unloaded", name)

    async def load(self) -> tuple[int, int, float | None] | None:
        """(running, waiting, KV-cache use in %) as vLLM's /metrics say; None when it does not answer."""
        try:
            response = await self.http.get("/metrics", timeout=2)
        except httpx.HTTPError:
            return None
        return engine_load(response.text) if response.status_code == 200 else None


def _engine_reason(response: httpx.Response) -> str:
    """The engine's words for a refusal (vLLM: OpenAI's error shape)."""
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else None
    except (ValueError, AttributeError):
        message = None
    return str(message or response.text or f"HTTP {response.status_code}")[:500]


def _dtype(config: Mapping[str, Any], gpu_count: int) -> str:
    if not gpu_count:
        return "float32"  # the CPU build: half precision is slow or missing there
    asked = config.get("infer_dtype")
    return asked if asked in DTYPES else "auto"


def _gpu_args(config: Mapping[str, Any], gpu_count: int) -> list[str]:
    args = [f"--tensor-parallel-size={gpu_count}"] if gpu_count > 1 else []
    utilization = config.get("vllm_gpu_util")
    if isinstance(utilization, int | float) and 0 < utilization <= 1:
        args.append(f"--gpu-memory-utilization={utilization}")
    if config.get("vllm_enforce_eager") is True:
        args.append("--enforce-eager")
    return args
