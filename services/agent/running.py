"""A job this agent runs: its engine, its model server (a deployment), its saved state, and what happened to it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from services.common.contracts import JobKind

from . import failures
from .ending import EndCause
from .events import CheckpointReport
from .runtimes import EngineRun
from .runtimes.base import ExitInfo
from .savedjob import SavedJob
from .serving import ModelServer


@dataclass
class RunningJob:
    """The runner's record of one job (runner.py); its flags become the run's EndCause when the engine exits."""

    job_id: str
    kind: JobKind = "train"
    gpu_ids: tuple[int, ...] = ()
    task: asyncio.Task | None = None
    engine: EngineRun | None = None
    cancelled: bool = False
    started: asyncio.Event = field(default_factory=asyncio.Event)
    server: ModelServer | None = None  # a deployment's model server
    saved: SavedJob = field(kw_only=True)  # order and cursor, on disk when the engine outlives the agent
    detached: bool = False  # the agent stops and leaves the engine running for the next agent
    agent_stopped: bool = False  # the agent stopped the engine as it stopped itself (a deployment)
    superseded: bool = False  # a newer attempt of the job was dispatched here: this run ends unreported
    preparing: asyncio.Task | None = None  # its inputs being fetched (objects mode): a cancel stops the wait
    # The MLflow run it reports to and the stage's environment that reaches its server (services/agent/tracking.py)
    mlflow: tuple[str, dict[str, str]] | None = None
    checkpoints: CheckpointReport | None = None  # the checkpoints told to the scheduler in this run
    pausable: bool = False  # its training engine runs engine/pausable_train.py (pausing.py)
    pausing: bool = False  # a pause was asked of the engine
    paused: bool = False  # the engine saved a checkpoint and stopped (PAUSED_EXIT)
    paused_step: int | None = None  # at this step, as it said
    exited: asyncio.Event = field(default_factory=asyncio.Event)  # the current stage's engine exited
    pause_missed_s: float | None = None  # no checkpoint came within this long of the pause: stopped as a cancel

    def end_cause(self, exit_info: ExitInfo, tail: Iterable[str]) -> EndCause:
        """Why this run ended: the engine's exit and last lines, and what the agent and the model server did."""
        server = self.server
        return failures.end_cause(
            exit_info,
            tail,
            cancelled=self.cancelled,
            paused=self.paused,
            paused_step=self.paused_step,
            pause_missed_s=self.pause_missed_s,
            agent_stopping=self.agent_stopped,
            idle_timeout_s=server.options.idle_timeout_s if server and server.idle_stopped else None,
            start_timeout_s=server.options.startup_timeout_s if server and server.start_timed_out else None,
        )
