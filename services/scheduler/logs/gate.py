"""Who may write a job's log, decided for every batch the relay copies (relay.py) without a query per batch.

The rule is the one job events follow (`refusal` in jobs/events.py): the agent the batch's subject names (NATS
vouches for it) must be the job's agent (`jobs.agent_id`), and the batch's attempt the job's attempt
(`jobs.attempt`). Each job's pair is read once and cached. The cache forgets a job when the scheduler announces a
committed change of it (`JobChanged` on `job.changed.<owner>.<job>`, published after every dispatch, re-queue,
retry, cancel and finish), forgets everything after a NATS reconnect (what was announced meanwhile is lost), and
reads an entry again once it is ENTRY_TTL_S old whatever happens.

A batch that the cached pair refuses is judged again on a fresh read when it names a newer attempt than the cached
one: attempts only grow, one per dispatch, so that is a dispatch whose announcement has not arrived yet, and the
first lines of a new run are never refused on stale knowledge. Reads are the one thing an agent could multiply
(batches for jobs it was never given, or with made-up attempts), so the reads that one agent's batches cause are
limited to READS_PER_S a second; past that its batches are judged on what is cached, and a batch for a job not
cached is refused.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..jobs.events import refusal
from ..jobs.store import Assignment

ENTRY_TTL_S = 30.0
MAX_ENTRIES = 20_000
READS_PER_S = 100  # per agent: far above what starting jobs need, far below what would load Postgres

Reader = Callable[[str], Awaitable[Mapping[str, Any] | None]]


async def read_assignment(pool, job_id: str) -> Mapping[str, Any] | None:
    """The agent and attempt a job was last dispatched as; None when there is no such job. No lock: this only reads
    (the scheduler's writers are in jobs/store.py and jobs/transitions.py)."""
    return await pool.fetchrow("SELECT agent_id, attempt FROM jobs WHERE id = $1", job_id)


@dataclass(frozen=True)
class _Entry:
    job: Assignment | None  # None: no such job
    read_at: float


class Assignments:
    """Each job's current agent and attempt, as recently read, and the check of a batch against them."""

    def __init__(
        self,
        read: Reader,
        *,
        clock: Callable[[], float] = time.monotonic,
        ttl_s: float = ENTRY_TTL_S,
        max_entries: int = MAX_ENTRIES,
        reads_per_s: int = READS_PER_S,
    ):
        self._read_row, self._clock = read, clock
        self.ttl_s, self.max_entries, self.reads_per_s = ttl_s, max_entries, reads_per_s
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._reads: dict[str, tuple[int, int]] = {}  # agent -> (second, reads its batches caused in it)
        self.reads = 0  # rows read in all: a test's and an operator's measure of the cache

    async def refusal(self, job_id: str, sender: str, batch) -> str | None:
        """Why `batch` (anything with an `attempt`), shipped by agent `sender` for `job_id`, may not enter the job's
        log; None when it may."""
        entry = self._entries.get(job_id)
        fresh = False
        if (entry is None or self._clock() - entry.read_at > self.ttl_s) and self._may_read(sender):
            entry, fresh = await self._read(job_id), True
        elif entry is None:
            return f"its agent caused more than {self.reads_per_s} job look-ups this second"
        else:  # cached (or expired, with the agent over its reads: judged on what was read last)
            self._entries.move_to_end(job_id)
        why = refusal(batch, sender, entry.job)
        cached_attempt = entry.job.attempt if entry.job is not None else 0
        if why is not None and not fresh and batch.attempt > cached_attempt and self._may_read(sender):
            why = refusal(batch, sender, (await self._read(job_id)).job)  # dispatched again since it was read
        return why

    def forget(self, job_id: str) -> None:
        """The job changed (dispatched, re-queued, retried, finished): read it again when it is next needed."""
        self._entries.pop(job_id, None)

    def clear(self) -> None:
        """Forget every job (after a NATS reconnect: changes announced meanwhile were not heard)."""
        self._entries.clear()

    async def _read(self, job_id: str) -> _Entry:
        row = await self._read_row(job_id)
        self.reads += 1
        job = None if row is None else Assignment(agent_id=row["agent_id"], attempt=row["attempt"])
        entry = _Entry(job, self._clock())
        self._entries[job_id] = entry
        self._entries.move_to_end(job_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return entry

    def _may_read(self, sender: str) -> bool:
        """Whether `sender`'s batches may cause one more read this second (and count it)."""
        second = int(self._clock())
        start, count = self._reads.get(sender, (second, 0))
        if start != second:
            count = 0
        if count >= self.reads_per_s:
            return False
        self._reads[sender] = (second, count + 1)
        return True
