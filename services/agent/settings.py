"""The agent's own settings: each declared once (environment variable, default, meaning), read once at start.

`AgentSettings.from_env(os.environ)` (the platform's one settings idiom, services.common.settings) runs in the
app factory (services/agent/app.py); the runner and the
runtimes are given the values, so nothing in the agent reads the environment at import time or in a
constructor. The storage paths and the NATS connection are every service's (services/common/settings.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.common.nats_auth import check_agent_id, default_agent_id
from services.common.settings import REPO_ROOT, env, from_env

DEFAULT_DOCKER_IMAGE = "lf-with-optimum:v1.0"  # the seed's engine image
DEFAULT_CLEANUP_DELAY_S = 60.0
# Variables of the hubs' clients that every engine gets, in a container too (hubs.py picks the hub itself).
ENGINE_ENV_PREFIXES = ("HF_", "TRANSFORMERS_", "MODELSCOPE_")


@dataclass(frozen=True, kw_only=True)
class AgentSettings:
    """Everything the agent reads from its environment (docs/docker.md and docs/fleet.md say how to set them)."""

    agent_id: str = env(
        "LLMCT_AGENT_ID",
        "agent",
        doc="this agent's id: NATS user, subjects, container labels (default: the host name made a subject token)",
    )
    heartbeat_s: float = env("LLMCT_HEARTBEAT_S", 5.0, doc="seconds between two heartbeats")
    cpu_slots: int | None = env(
        "LLMCT_CPU_SLOTS", None, doc="CPU jobs run at once (default: 1 without GPUs, 0 with them)"
    )
    runtime: str = env("LLMCT_RUNTIME", "process", doc="`process` or `docker` (docs/docker.md)")
    engine_bin: Path = env(
        "LLMCT_ENGINE_BIN",
        REPO_ROOT / ".venv-engine" / "bin",
        doc="the process runtime's engine environment's bin folder",
    )
    vllm_bin: Path = env(
        "LLMCT_VLLM_BIN",
        REPO_ROOT / ".venv-vllm" / "bin",
        doc="vLLM's environment's bin folder (engine/vllm/install.sh): where it holds a Python with vLLM and the "
        "runtime is `process`, deployments are served by vLLM, else by LLaMA-Factory's server",
    )
    vllm_cpu_kv_cache_mb: int = env(
        "LLMCT_VLLM_CPU_KV_CACHE_MB", 256, doc="vLLM on a host without GPUs: its KV cache, in MiB"
    )
    vllm_cpu_max_model_len: int = env(
        "LLMCT_VLLM_CPU_MAX_MODEL_LEN",
        1024,
        doc="vLLM on a host without GPUs: the context length of a deployment that sets none (at most the model's)",
    )
    state_path: Path | None = env(
        "LLMCT_AGENT_STATE_PATH",
        None,
        doc="where jobs in containers are saved for the next agent (a local disk is best: a "
        "cursor is rewritten after every batch of log lines); default "
        "<LLMCT_STATE_PATH>/agents/<id>",
    )
    cache_gb: float = env(
        "LLMCT_AGENT_CACHE_GB",
        50.0,
        doc="`objects` storage mode: the most GB of inputs the agent keeps (least recently used out first)",
    )
    cache_path: Path | None = env(
        "LLMCT_AGENT_CACHE_PATH",
        None,
        doc="`objects` storage mode: where inputs are cached, on the storage base's filesystem (they are hard "
        "linked into it); default <HOST_BASE_PATH>/cache",
    )
    docker_image: str = env("LLMCT_DOCKER_IMAGE", DEFAULT_DOCKER_IMAGE, doc="the engine image of the docker runtime")
    docker_memory: str | None = env(
        "LLMCT_DOCKER_MEMORY",
        "auto",
        doc="a memory limit per container, e.g. 24g; auto: 90% of the host's memory",
    )
    docker_pids_limit: int = env(
        "LLMCT_DOCKER_PIDS_LIMIT", 8192, doc="processes and threads per container (a fork bomb stops there)"
    )
    docker_extra_mounts: str = env("LLMCT_DOCKER_EXTRA_MOUNTS", "", doc='more read-only mounts, "HOST[:CONTAINER],..."')
    docker_cleanup_delay_s: float = env(
        "LLMCT_DOCKER_CLEANUP_DELAY_S", DEFAULT_CLEANUP_DELAY_S, doc="how long an exited container is kept"
    )
    docker_network: str | None = env(
        "LLMCT_DOCKER_NETWORK", None, doc="the containers' network mode (Docker's default if unset)"
    )
    docker_user: str | None = env(
        "LLMCT_DOCKER_USER",
        None,
        doc='"uid:gid" the engine runs as, never root (default: the agent\'s own; an agent running as root: the '
        "storage's owner, else 65532:65532)",
    )
    simulated_gpus: int = env(
        "LLMCT_SIMULATED_GPUS",
        0,
        doc="TEST/DEV ONLY: report this many fake GPUs instead of asking NVML (never on a real "
        "GPU host: the scheduler would place work on GPUs that do not exist)",
    )
    simulated_gpu_memory_mb: int = env(
        "LLMCT_SIMULATED_GPU_MEMORY_MB", 24576, doc="TEST/DEV ONLY: the memory of each simulated GPU"
    )
    engine_env: dict[str, str] = field(default_factory=dict)
    """HF_*, TRANSFORMERS_*, MODELSCOPE_*: the hubs' client settings (endpoints, tokens) every engine gets."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AgentSettings:
        """The settings in `environ` (an empty value counts as unset); raises ValueError naming the variable of a
        value of the wrong type, and BadAgentId on an id NATS cannot carry."""
        engine_env = {k: v for k, v in environ.items() if k.startswith(ENGINE_ENV_PREFIXES)}
        given = {} if environ.get("LLMCT_AGENT_ID") else {"agent_id": default_agent_id()}
        settings = from_env(cls, environ, engine_env=engine_env, **given)
        check_agent_id(settings.agent_id)  # a bad LLMCT_AGENT_ID stops the agent before it connects anywhere
        return settings

    def extra_mounts(self) -> dict[str, str]:
        """LLMCT_DOCKER_EXTRA_MOUNTS as {host path: container path}."""
        return split_mounts(self.docker_extra_mounts)

    def slots(self, has_gpus: bool) -> int:
        """CPU jobs this agent runs at once: LLMCT_CPU_SLOTS, else 1 on a host without GPUs and 0 on one with."""
        return self.cpu_slots if self.cpu_slots is not None else (0 if has_gpus else 1)


def split_mounts(text: str) -> dict[str, str]:
    """ "HOST[:CONTAINER],..." as {host: container} (the host path itself when no container path is given)."""
    mounts: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, _, target = item.partition(":")
        mounts[host] = target or host
    return mounts
