"""A deployment's limits: at most `max_in_flight` requests sent to the engine at once, at most `max_queue` waiting
at the agent for one of those; a request beyond both is refused at once (429 with a Retry-After), so that a burst
costs the engine nothing and the client knows when to come back."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator

RETRY_AFTER_MAX_S = 60
_WEIGHT = 0.2  # of the newest request in the average duration


class QueueFull(Exception):
    """Every in-flight place is taken and the queue is full; `retry_after_s`: when one is likely free."""

    def __init__(self, retry_after_s: int):
        super().__init__(f"retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class Admission:
    """See the module's docstring."""

    def __init__(self, max_in_flight: int, max_queue: int):
        self.max_in_flight, self.max_queue = max_in_flight, max_queue
        self.running = 0  # sent to the engine
        self.waiting = 0  # at the agent, for a place
        self._places = asyncio.Semaphore(max_in_flight)
        self._average_s = 1.0  # a request's duration, recent ones weighing most

    @contextlib.asynccontextmanager
    async def place(self) -> AsyncIterator[None]:
        """Hold one in-flight place for the block (waiting in the queue first); QueueFull when it is full."""
        if self.running + self.waiting >= self.max_in_flight + self.max_queue:
            raise QueueFull(self.retry_after_s())
        self.waiting += 1
        try:
            await self._places.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        started = time.monotonic()
        try:
            yield
        finally:
            self.running -= 1
            self._places.release()
            self._average_s += _WEIGHT * (time.monotonic() - started - self._average_s)

    def retry_after_s(self) -> int:
        """Seconds until the queue has likely moved by one place: the queue's turns times a request's duration."""
        turns = (self.waiting + 1) / self.max_in_flight
        return max(1, min(RETRY_AFTER_MAX_S, math.ceil(turns * self._average_s)))
