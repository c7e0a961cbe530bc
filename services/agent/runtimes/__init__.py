"""Runtimes run one engine command for a job: `process` (local process group) or `docker`."""

from __future__ import annotations

from .base import EngineRun, ExitInfo, JobSpec, Runtime


def make_runtime(name: str, **options) -> Runtime:
    """The runtime called `name` (LLMCT_RUNTIME)."""
    if name == "process":
        from .process import ProcessRuntime

        return ProcessRuntime(**options)
    if name == "docker":
        from .docker import DockerRuntime

        return DockerRuntime(**options)
    raise ValueError(f"unknown runtime {name!r}: use 'process' or 'docker'")


__all__ = ["EngineRun", "ExitInfo", "JobSpec", "Runtime", "make_runtime"]
