"""Runtimes run one engine command for a job: `process` (local process group) or `docker`."""

from __future__ import annotations

from services.common.settings import StoragePaths

from ..settings import AgentSettings
from .base import EngineRun, ExitInfo, JobSpec, Runtime


def make_runtime(name: str, **options) -> Runtime:
    """The runtime called `name` (LLMCT_RUNTIME)."""
    if name == "process":
        from .process import ProcessRuntime

        return ProcessRuntime(**options)
    if name == "docker":
        # Imported only here: an agent with the process runtime never loads the Docker SDK.
        from .docker import DockerRuntime

        return DockerRuntime(**options)
    raise ValueError(f"unknown runtime {name!r}: use 'process' or 'docker'")


def runtime_from_settings(settings: AgentSettings, storage: StoragePaths) -> Runtime:
    """The runtime the agent's settings name (LLMCT_RUNTIME), configured from them."""
    if settings.runtime == "process":
        return make_runtime("process", engine_bin=settings.engine_bin)
    if settings.runtime == "docker":
        return make_runtime(
            "docker",
            storage=storage,
            agent_id=settings.agent_id,
            image=settings.docker_image,
            memory=settings.docker_memory,
            extra_mounts=settings.extra_mounts(),
            cleanup_delay_s=settings.docker_cleanup_delay_s,
            network=settings.docker_network,
            user=settings.docker_user,
            pids_limit=settings.docker_pids_limit,
        )
    return make_runtime(settings.runtime)  # an unknown name: make_runtime says which there are


__all__ = ["EngineRun", "ExitInfo", "JobSpec", "Runtime", "make_runtime", "runtime_from_settings"]
