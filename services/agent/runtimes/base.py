"""What every runtime provides; the agent owns the loops around it (logs, progress, cancel)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from services.common.contracts import FinishReason, JobKind


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """One engine command to run for a job."""

    job_id: str
    kind: JobKind
    command: tuple[str, ...]  # e.g. ("llamafactory-cli", "train", "/…/temp/job_x.yaml")
    config_path: Path
    output_dir: Path
    gpu_ids: tuple[int, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()  # loopback ports the engine listens on (a deployment's model server)
    stage: int = 0  # which of the job's stages this is (0-based); a restarted agent goes on after it
    attempt: int = 1  # the dispatch's (JobDispatched.attempt): every event of the run carries it
    downloads: bool = False  # its model or a dataset comes from a hub: it gets the hub's credentials and cache
    # The process runtime: the environment whose bin folder holds command[0], when not the engine's (vLLM's own).
    bin_dir: Path | None = None
    # A folder of ours on the engine's PYTHONPATH (pausing.py: the pause hook beside the config); docker mounts it
    # read-only.
    hook_dir: Path | None = None


@dataclass(frozen=True, kw_only=True)
class ExitInfo:
    exit_code: int
    oom_killed: bool = False
    error: str | None = None  # the runtime could not start the engine (image missing, bad device...)
    error_reason: FinishReason | None = None


class EngineRun(Protocol):
    """A started engine."""

    def lines(self) -> AsyncIterator[tuple[str, str]]:
        """(stream, text) for every line the engine prints, stdout and stderr, until it exits."""
        ...

    async def wait(self) -> ExitInfo:
        """Wait for the engine to exit."""
        ...

    async def stop(self, grace_s: float) -> None:
        """SIGTERM, then kill after `grace_s`."""
        ...


@dataclass(frozen=True, kw_only=True)
class FoundEngine:
    """An engine this agent started before it restarted, found again (docker: a labelled container)."""

    job_id: str
    kind: JobKind  # docker: its label, written from the JobSpec's kind
    stage: int
    running: bool  # False: it exited while no agent followed it
    ref: str  # the runtime's handle (a container id)
    name: str
    output_dir: str = ""
    gpu_ids: tuple[int, ...] = ()
    attempt: int = 0  # of the dispatch it ran (docker: its label); 0: not known


class Runtime(Protocol):
    """Runs engines; the engines die with the agent unless the runtime is also `Reattachable`."""

    name: str

    async def start(self, spec: JobSpec) -> EngineRun:
        """Start the engine; raises RuntimeStartError when it cannot."""
        ...

    async def cleanup(self) -> None:
        """Remove what this runtime started and no longer needs (exited containers)."""
        ...


@runtime_checkable
class Reattachable(Protocol):
    """A runtime whose engines outlive the agent (docker). The runner checks for it once, when it is built: it
    then leaves engines running when it stops and picks them up when it starts (services/agent/reattach.py)."""

    async def find_own(self) -> list[FoundEngine]:
        """This agent's engines still there, running or exited."""
        ...

    async def attach(self, found: FoundEngine, position: Mapping[str, Any] | None = None) -> EngineRun:
        """Follow a found engine again, from `position` (an earlier run's) or from its first line."""
        ...

    async def stop_found(self, found: FoundEngine, grace_s: float = 5) -> None:
        """Stop a found engine without following it."""
        ...

    def position_since(self, ref: str, seconds: float) -> dict[str, Any]:
        """A position that skips what the engine printed before `seconds` (an epoch time)."""
        ...


@runtime_checkable
class Detachable(Protocol):
    """An EngineRun of a Reattachable runtime: the agent can stop following it and leave it running."""

    position: Mapping[str, Any]
    """How far the lines handed out so far reach, saved with each shipped batch for the next agent."""

    def detach(self) -> None:
        """Stop following the engine and leave it running."""
        ...


class RuntimeStartError(Exception):
    """The engine could not be started; `reason` is a stable code (image_missing, start_failed...), reported as
    the job's reason as it is."""

    def __init__(self, reason: FinishReason, message: str):
        super().__init__(message)
        self.reason: FinishReason = reason  # declared: an inferred type would widen to str
        self.message = message
