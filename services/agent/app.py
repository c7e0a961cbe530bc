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
from services.common.app import ServiceSpec, create_service_app
from services.common.settings import REPO_ROOT, Settings

from .resources import read_gpus, read_host
from .runner import Runner
from .runtimes import make_runtime

log = logging.getLogger(__name__)

HEARTBEAT_EVERY_S = float(os.environ.get("LLMCT_HEARTBEAT_S", "5"))
ENGINE_BIN = REPO_ROOT / ".venv-engine" / "bin"


def agent_id() -> str:
    """LLMCT_AGENT_ID, else the host name."""
    return os.environ.get("LLMCT_AGENT_ID") or socket.gethostname()


async def heartbeat(app: Litestar) -> contracts.AgentHeartbeat:
    """Read this host's resources and publish them once."""
    gpus, host = await asyncio.gather(asyncio.to_thread(read_gpus), asyncio.to_thread(read_host))
    beat = contracts.AgentHeartbeat(
        agent_id=app.state.agent_id, hostname=socket.gethostname(), sent_at=datetime.now(UTC), gpus=gpus,
        cpu_slots=cpu_slots(bool(gpus)), **host,
        running_jobs=tuple(app.state.runner.jobs),
    )
    await app.state.nc.publish(contracts.Subjects.agent_heartbeat(beat.agent_id), contracts.encode(beat))
    return beat


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


async def _start(app: Litestar) -> None:
    settings = app.state.settings
    settings.storage.ensure()
    app.state.agent_id = agent_id()
    app.state.runner = Runner(nc=app.state.nc, js=app.state.js, agent_id=app.state.agent_id,
                              runtime=runtime_from_env(settings.storage, app.state.agent_id),
                              storage=settings.storage,
                              engine_env={k: v for k, v in os.environ.items() if k.startswith(("HF_", "TRANSFORMERS_"))},
                              cpu_threads=max(1, (os.cpu_count() or 1) // max(1, cpu_slots(False))))
    await app.state.runner.start()
    app.state.beater = asyncio.create_task(_beat_forever(app))


async def _stop(app: Litestar) -> None:
    app.state.beater.cancel()
    await app.state.runner.stop()


SPEC = ServiceSpec(
    name="agent",
    description="runs jobs on a GPU host and reports its resources",
    uses_store=False,
    on_startup=[_start],
    on_shutdown=[_stop],
)


def create_app(settings: Settings | None = None) -> Litestar:
    """App factory for `llmct service agent`."""
    return create_service_app(SPEC, settings)
