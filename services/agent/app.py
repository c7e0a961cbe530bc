"""The GPU agent: dials out to NATS, runs jobs on its host, reports heartbeats.

It owns nothing in Postgres; its HTTP port only answers /health and /metrics on loopback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from litestar import Litestar

from services.common import contracts
from services.common.app import VERSION, ServiceSpec, create_service_app
from services.common.lifecycle import Background, Context
from services.common.nats_auth import agent_inbox_prefix
from services.common.settings import Settings

from .cache import Cache
from .objectsmode import ObjectsStorage
from .resources import read_gpus, read_host
from .runner import Runner
from .runtimes import runtime_from_settings
from .settings import AgentSettings
from .vllm import VllmSetup, has_vllm

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class AgentContext(Context):
    """The shared context (no pool), the agent's own settings and its runner."""

    agent: AgentSettings
    runner: Runner


async def heartbeat(context: AgentContext) -> contracts.AgentHeartbeat:
    """Read this host's resources and publish them once."""
    settings = context.agent
    gpus, host = await asyncio.gather(
        asyncio.to_thread(read_gpus, settings.simulated_gpus, settings.simulated_gpu_memory_mb),
        asyncio.to_thread(read_host),
    )
    runner = context.runner
    jobs = list(runner.jobs.values())
    slots = settings.slots(bool(gpus))
    free_gpus, free_cpu = free_slots(jobs, gpus, slots)
    beat = contracts.AgentHeartbeat(
        agent_id=settings.agent_id,
        hostname=socket.gethostname(),
        sent_at=datetime.now(UTC),
        gpus=gpus,
        cpu_slots=slots,
        **host,
        running_jobs=tuple(j.job_id for j in jobs if j.kind != "deploy"),
        running_deployments=tuple(j.job_id for j in jobs if j.kind == "deploy"),
        free_gpu_slots=free_gpus,
        free_cpu_slots=free_cpu,
        version=VERSION,
        runtime=runner.runtime.name,
        engines=runner.engines,
    )
    await context.nc.publish(contracts.Subjects.agent_heartbeat(beat.agent_id), contracts.encode(beat))
    return beat


def free_slots(jobs: list, gpus: tuple[contracts.GpuStatus, ...], cpu_slot_count: int) -> tuple[int, int]:
    """GPUs no running job holds, and CPU slots left (a job without GPUs takes one CPU slot)."""
    held = {i for job in jobs for i in job.gpu_ids}
    cpu_jobs = sum(1 for job in jobs if not job.gpu_ids)
    return sum(1 for g in gpus if g.index not in held), max(0, cpu_slot_count - cpu_jobs)


async def _beat_forever(context: AgentContext) -> None:
    """Publish a heartbeat every `heartbeat_s`."""
    while True:
        try:
            await heartbeat(context)
        except Exception:
            log.exception("heartbeat failed")
        await asyncio.sleep(context.agent.heartbeat_s)


def make_runner(context: Context, settings: AgentSettings) -> Runner:
    """The runner of this agent, with its runtime and its storage mode, configured from the settings."""
    storage = context.settings.storage
    files = None
    if context.settings.storage_mode == "objects":
        cache = Cache(context.js, settings.cache_path or storage.base / "cache", int(settings.cache_gb * 1024**3))
        files = ObjectsStorage(context.js, storage.base, cache)
    return Runner(
        nc=context.nc,
        js=context.js,
        agent_id=settings.agent_id,
        runtime=runtime_from_settings(settings, storage),
        storage=storage,
        engine_env=settings.engine_env,
        # A CPU job's share of the cores, so that CPU slots side by side don't starve each other.
        cpu_threads=max(1, (os.cpu_count() or 1) // max(1, settings.slots(False))),
        state_dir=settings.state_path,
        files=files,
        vllm=vllm_setup(settings),
    )


def vllm_setup(settings: AgentSettings) -> VllmSetup | None:
    """Where vLLM is and how it runs on a host without GPUs; None when LLMCT_VLLM_BIN holds no vLLM (looked at
    once, as the agent starts)."""
    if not has_vllm(settings.vllm_bin):
        log.info("no vLLM in %s: deployments are served by LLaMA-Factory's server", settings.vllm_bin)
        return None
    return VllmSetup(
        bin=settings.vllm_bin,
        cpu_kv_cache_bytes=settings.vllm_cpu_kv_cache_mb * 1024 * 1024,
        cpu_max_model_len=settings.vllm_cpu_max_model_len,
    )


async def _prepare(context: AgentContext) -> None:
    """The storage folders, and a warning when the GPUs are simulated."""
    context.settings.storage.ensure()
    if context.agent.simulated_gpus:
        log.warning(
            "LLMCT_SIMULATED_GPUS is set: reporting %s simulated GPUs (a test setting; never on a real host)",
            context.agent.simulated_gpus,
        )


async def _start_runner(context: AgentContext) -> None:
    """Take cancels, pick up what the last agent left running, then take dispatches (the runner's own loops)."""
    await context.runner.start()


async def _stop_runner(context: AgentContext) -> None:
    """Containers (docker runtime) keep running and the next agent re-attaches; processes are stopped."""
    await context.runner.stop()


def service_spec(settings: AgentSettings) -> ServiceSpec:
    """The agent as a service of the platform: its context, runner and heartbeats given the agent's settings."""
    return ServiceSpec(
        name="agent",
        description="runs jobs on a GPU host and reports its resources",
        uses_store=False,
        manages_streams=False,  # its NATS user may only use its own consumer (docs/fleet.md)
        bus_options=lambda: {"inbox_prefix": agent_inbox_prefix(settings.agent_id)},
        context=lambda base: base.extended(AgentContext, agent=settings, runner=make_runner(base, settings)),
        on_startup=[_prepare],
        background=[
            Background(name="runner", start=_start_runner, stop=_stop_runner),
            Background(name="heartbeats", run=_beat_forever),
        ],
    )


def create_app(settings: Settings | None = None, agent_settings: AgentSettings | None = None) -> Litestar:
    """App factory for `llmct service agent`: the agent's settings are read here, once (a bad LLMCT_AGENT_ID
    stops the agent here, before it connects anywhere)."""
    agent_settings = agent_settings or AgentSettings.from_env(os.environ)
    return create_service_app(service_spec(agent_settings), settings)
