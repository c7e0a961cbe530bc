"""How the agent publishes a job's events: what the runner, a model server and the re-attach on start are given."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from nats.js import JetStreamContext

from services.common import contracts
from services.common.contracts import Subjects

from . import uploads

log = logging.getLogger(__name__)

FETCH_REPORT_EVERY_S = 0.5  # a job's input fetch reaches the scheduler at most twice a second


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


class FetchReport:
    """A job's input fetch (services/agent/cache.py) as JobFetchProgressed events: the first and the last always,
    between them at most one every `every_s` (a fetch tells its progress every few MB)."""

    def __init__(self, publish: Publish, job_id: str, attempt: int, every_s: float = FETCH_REPORT_EVERY_S):
        self.publish = publish
        self.job_id, self.attempt = job_id, attempt
        self.every_s = every_s
        self._sent: tuple[str, int, int] | None = None
        self._sent_at = 0.0

    async def __call__(self, name: str, done: int, total: int) -> None:
        """Report `done` of `total` bytes of the job's inputs, fetching `name`, unless one was sent just now."""
        now = time.monotonic()
        first, last = self._sent is None, done >= total
        if (name, done, total) == self._sent or not (first or last or now - self._sent_at >= self.every_s):
            return
        self._sent, self._sent_at = (name, done, total), now
        event = contracts.JobFetchProgressed(
            job_id=self.job_id,
            input=name[:1024],
            done_bytes=max(done, 0),
            total_bytes=max(total, 0),
            attempt=self.attempt,
            at=datetime.now(UTC),
        )
        await self.publish(event)


class CheckpointReport:
    """A job's checkpoints (services/agent/uploads.py's watcher) as JobCheckpointSaved / JobCheckpointRemoved."""

    def __init__(self, publish: Publish, job_id: str, agent_id: str, attempt: int):
        self.publish = publish
        self.job_id, self.agent_id, self.attempt = job_id, agent_id, attempt
        self.steps: list[int] = []  # told saved, in order

    async def saved(self, step: int, folder: Path) -> None:
        train_loss, valid_loss, epoch = await asyncio.to_thread(uploads.saved_metrics, folder, step)
        self.steps.append(step)
        event = contracts.JobCheckpointSaved(
            job_id=self.job_id,
            agent_id=self.agent_id,
            step=step,
            train_loss=train_loss,
            valid_loss=valid_loss,
            epoch=epoch,
            attempt=self.attempt,
            at=datetime.now(UTC),
        )
        await self.publish(event, must_arrive=True)

    async def removed(self, step: int) -> None:
        event = contracts.JobCheckpointRemoved(
            job_id=self.job_id, agent_id=self.agent_id, step=step, attempt=self.attempt, at=datetime.now(UTC)
        )
        await self.publish(event)
