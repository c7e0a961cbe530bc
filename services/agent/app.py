"""The GPU agent: dials out to NATS, runs jobs on its host, reports heartbeats.

It owns nothing in Postgres; its HTTP port only answers /health and /metrics on loopback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path
from datetime import UTC, datetime

from litestar import Litestar

from services.common import contracts
from services.common.app import VERSION, ServiceSpec, create_service_app
from services.common.nats_auth import agent_inbox_prefix, check_agent_id, default_agent_id
from services.common.settings import REPO_ROOT, Settings

from .resources import read_gpus, read_host
from .runner import Runner
from .runtimes import make_runtime

log = logging.getLogger(__name__)

HEARTBEAT_EVERY_S = float(os.environ.get("LLMCT_HEARTBEAT_S", "5"))
ENGINE_BIN = REPO_ROOT / ".venv-engine" / "bin"


def agent_id() -> str:
    """LLMCT_AGENT_ID, else the host name (made a valid subject token); refused unless NATS can carry it."""
    return check_agent_id(os.environ.get("LLMCT_AGENT_ID") or default_agent_id())


async def heartbeat(app: Litestar) -> contracts.AgentHeartbeat:
    """Read this host's resources and publish them once."""
    gpus, host = await asyncio.gather(asyncio.to_thread(read_gpus), asyncio.to_thread(read_host))
    runner = app.state.runner
    jobs = list(runner.jobs.values())
    slots = cpu_slots(bool(gpus))
    free_gpus, free_cpu = free_slots(jobs, gpus, slots)
    beat = contracts.AgentHeartbeat(
        agent_id=app.state.agent_id, hostname=socket.gethostname(), sent_at=datetime.now(UTC), gpus=gpus,
        cpu_slots=slots, **host,
        running_jobs=tuple(j.job_id for j in jobs if j.kind != "deploy"),
        running_deployments=tuple(j.job_id for j in jobs if j.kind == "deploy"),
        free_gpu_slots=free_gpus, free_cpu_slots=free_cpu,
        version=VERSION, runtime=getattr(runner.runtime, "name", type(runner.runtime).__name__),
    )
    await app.state.nc.publish(contracts.Subjects.agent_heartbeat(beat.agent_id), contracts.encode(beat))
    return beat


def free_slots(jobs: list, gpus: tuple[contracts.GpuStatus, ...], cpu_slot_count: int) -> tuple[int, int]:
    """GPUs no running job holds, and CPU slots left (a job without GPUs takes one CPU slot)."""
    held = {i for job in jobs for i in (getattr(job, "gpu_ids", None) or ())}
    cpu_jobs = sum(1 for job in jobs if not getattr(job, "gpu_ids", None))
    return sum(1 for g in gpus if g.index not in held), max(0, cpu_slot_count - cpu_jobs)


async def _beat_forever(app: Litestar) -> None:
    while True:
        try:
            await heartbeat(app)
        except Exception:  # noqa: BLE001 - a missed beat must not stop the next one
            log.exception("heartbeat failed")
        await asyncio.sleep(HEARTBEAT_EVERY_S)


def cpu_slots(has_gpus: bool) -> int:
    """LLMCT_CPU_SLOTS: CPU jobs this agent runs at once (default: 1 without GPUs, 0 with them)."""
    return int(os.environ.get("LLMCT_CPU_SLOTS", "0" if has_gpus else "1"))


def runtime_from_env(storage, agent: str):
    """LLMCT_RUNTIME: `process` (default; engine from LLMCT_ENGINE_BIN) or `docker` (docs/docker.md)."""
    name = os.environ.get("LLMCT_RUNTIME", "process")
    if name == "process":
        return make_runtime("process", engine_bin=Path(os.environ.get("LLMCT_ENGINE_BIN", ENGINE_BIN)))
    return make_runtime(name, storage=storage, agent_id=agent)


def state_dir() -> Path | None:
    """LLMCT_AGENT_STATE_PATH: where jobs in containers are saved for the next agent (a local disk is best:
    a cursor is rewritten after every batch of log lines); default <HOST_BASE_PATH>/state/agents/<agent id>."""
    value = os.environ.get("LLMCT_AGENT_STATE_PATH")
    return Path(value) if value else None


def engine_env() -> dict[str, str]:
    """The agent's settings for the hubs' clients that every engine gets, in a container too (HF_ENDPOINT,
    MODELSCOPE_ENDPOINT, tokens...); the hub itself is the stage's (hubs.py)."""
    return {k: v for k, v in os.environ.items() if k.startswith(("HF_", "TRANSFORMERS_", "MODELSCOPE_"))}


async def _start(app: Litestar) -> None:
    settings = app.state.settings
    settings.storage.ensure()
    app.state.agent_id = agent_id()
    if os.environ.get("LLMCT_SIMULATED_GPUS"):
        log.warning("LLMCT_SIMULATED_GPUS is set: reporting %s simulated GPUs (a test setting; never on a real host)",
                    os.environ["LLMCT_SIMULATED_GPUS"])
    app.state.runner = Runner(nc=app.state.nc, js=app.state.js, agent_id=app.state.agent_id,
                              runtime=runtime_from_env(settings.storage, app.state.agent_id),
                              storage=settings.storage,
                              engine_env=engine_env(),
                              cpu_threads=max(1, (os.cpu_count() or 1) // max(1, cpu_slots(False))),
                              state_dir=state_dir())
    await app.state.runner.start()
    app.state.beater = asyncio.create_task(_beat_forever(app))


async def _stop(app: Litestar) -> None:
    # Containers (docker runtime) keep running and the next agent re-attaches; processes are stopped.
    app.state.beater.cancel()
    await app.state.runner.stop()


SPEC = ServiceSpec(
    name="agent",
    description="runs jobs on a GPU host and reports its resources",
    uses_store=False,
    manages_streams=False,  # its NATS user may only use its own consumer (docs/fleet.md)
    bus_options=lambda: {"inbox_prefix": agent_inbox_prefix(agent_id())},
    on_startup=[_start],
    on_shutdown=[_stop],
)


def create_app(settings: Settings | None = None) -> Litestar:
    """App factory for `llmct service agent`."""
    agent_id()  # a bad LLMCT_AGENT_ID stops the agent here, before it connects anywhere
    return create_service_app(SPEC, settings)
