"""How the agent publishes a job's events: what the runner, a model server and the re-attach on start are given."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from nats.js import JetStreamContext

from services.common import contracts
from services.common.contracts import Subjects

log = logging.getLogger(__name__)


class Publish(Protocol):
    """Publishes one job event; `must_arrive` for a final state, which is retried until NATS takes it."""

    async def __call__(self, event: contracts.JobEvent, *, must_arrive: bool = False) -> None: ...


class JobEvents:
    """Publishes job events to JOB_EVENTS on this agent's own subject (the only one its NATS user may use)."""

    def __init__(self, js: JetStreamContext, agent_id: str):
        self.js = js
        self.agent_id = agent_id

    async def __call__(self, event: contracts.JobEvent, *, must_arrive: bool = False) -> None:
        """Publish `event`; a progress event that fails is dropped (the next one says more), a final one is
        retried with a growing pause, since the scheduler would otherwise never hear how the job ended."""
        subject = Subjects.job_status(self.agent_id, event.job_id)
        delay = 0.5
        while True:
            try:
                await self.js.publish(subject, contracts.encode(event), timeout=5)
                return
            except Exception:  # noqa: BLE001
                if not must_arrive:
                    log.warning("progress event for %s not published", event.job_id)
                    return
                log.warning("final event for %s not published yet; retrying", event.job_id)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
