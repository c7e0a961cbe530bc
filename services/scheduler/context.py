"""What the scheduler's loops, consumers and routes share, built once by its lifespan."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

from services.common.lifecycle import Context

from .fleet.heartbeats import HeartbeatRecorder
from .logs.gate import Assignments, read_assignment
from .logs.relay import LogRelay
from .settings import SchedulerSettings


@dataclass(frozen=True, kw_only=True)
class SchedulerContext(Context):
    """The shared context, and the scheduler's own parts."""

    wake: asyncio.Event
    """Set to make the dispatcher look at the queue now (a job submitted or finished, an agent's room changed)."""
    heartbeats: HeartbeatRecorder
    relay: LogRelay

    @property
    def scheduler_settings(self) -> SchedulerSettings:
        """The settings, as the scheduler's own (create_app builds them so)."""
        return cast(SchedulerSettings, self.settings)


def scheduler_context(base: Context) -> SchedulerContext:
    """The scheduler's context; the dispatcher's first pass, at once, re-examines every job."""
    wake = asyncio.Event()
    wake.set()
    settings = cast(SchedulerSettings, base.settings)
    relay = LogRelay(base.nc, base.js, Assignments(lambda job_id: read_assignment(base.pool, job_id)))
    return base.extended(SchedulerContext, wake=wake, heartbeats=HeartbeatRecorder(settings.sample_s), relay=relay)
