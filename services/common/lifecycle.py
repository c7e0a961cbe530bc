"""What a service runs besides its routes: the context its lifespan opens, its declared background parts, and
the one owner that starts them (with the consumers) and stops them all.

A service declares, beside the code that runs them, `Background` parts (a loop, a start/stop pair, or both) and
`Consumer`s (services.common.consumers) in its `ServiceSpec`. The lifespan starts them in order once the pool and
NATS are up, and on shutdown, or when a later start step fails, cancels every task, waits for them, and runs the
parts' stops in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any, Generic, TypeVar

from asyncpg import Pool
from nats.aio.client import Client
from nats.js import JetStreamContext

from .consumers import Consumer, run_consumer
from .security import RevokedSessions
from .settings import Settings

log = logging.getLogger(__name__)

C = TypeVar("C")
Ctx = TypeVar("Ctx", bound="Context")


@dataclass(frozen=True, kw_only=True)
class Context:
    """What the lifespan opened, built once: given to start-up hooks, background parts, consumers and answers, and
    (through dependency injection) to routes. A service with parts of its own extends it (`extended`)."""

    settings: Settings
    nc: Client
    js: JetStreamContext
    store: Pool | None
    """The asyncpg pool; None for a service without a store (the agent)."""
    revoked: RevokedSessions
    reconnected: list[Callable[[], Awaitable[None]]]
    """Coroutine functions run after each NATS reconnect (core NATS lost what was published meanwhile)."""

    @property
    def pool(self) -> Pool:
        """The asyncpg pool of a service with a store."""
        if self.store is None:
            raise RuntimeError("this service has no store")
        return self.store

    def extended(self, cls: type[Ctx], **more: Any) -> Ctx:
        """This context as a service's own subclass of it, with the fields only that service has."""
        return cls(**{f.name: getattr(self, f.name) for f in fields(Context)}, **more)


Step = Callable[[C], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class Background(Generic[C]):
    """A long-running part of a service. `start` is awaited before the service is ready; `run` is a task until
    shutdown cancels it (or until it returns: a one-off catch-up); `stop` is awaited once the tasks have ended."""

    name: str
    run: Step[C] | None = None
    start: Step[C] | None = None
    stop: Step[C] | None = None


class Running:
    """The owner of a service's background parts and consumers: started in order, stopped all together."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task] = []
        self._stops: list[tuple[str, Callable[[], Awaitable[None]]]] = []

    async def start(self, part: Background[C], context: C) -> None:
        """Start one part: its `start` first (a failure propagates), then its loop as a task."""
        if part.start is not None:
            await part.start(context)
        if part.stop is not None:
            stop = part.stop
            self._stops.append((part.name, lambda: stop(context)))
        if part.run is not None:
            self.spawn(part.name, part.run(context))

    def consume(self, js: JetStreamContext, consumer: Consumer[C, Any], context: C) -> None:
        """Run one declared consumer as a task."""
        self.spawn(consumer.durable, run_consumer(js, consumer, context))

    def spawn(self, name: str, work: Awaitable[None]) -> None:
        """Own one task; one that dies of an error says so at once rather than at shutdown."""
        task = asyncio.ensure_future(work)
        task.set_name(name)
        task.add_done_callback(_report_failure)
        self.tasks.append(task)

    async def stop(self) -> None:
        """Cancel every task and wait for them, then run the parts' stops in reverse order (each one, whatever the
        others do)."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        while self._stops:
            name, stop = self._stops.pop()
            try:
                await stop()
            except Exception:
                log.exception("stopping %s failed", name)


def _report_failure(task: asyncio.Task) -> None:
    """Log a background task that ended with an error (a bug: the loops catch what they expect)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("background task %s died", task.get_name(), exc_info=exc)
