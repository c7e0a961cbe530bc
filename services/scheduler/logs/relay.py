"""The checked relay of job logs: from what agents ship (LOG_INGEST, `job.logs.<agent_id>.<job_id>`) to what viewers
and replays read (LOGS, `logs.<job_id>`), batch by batch and unchanged, when the shipping agent runs the job's
current attempt (gate.py); any other batch is dropped with a warning (at most one per agent every WARN_EVERY_S).

It runs in the scheduler because the check is about `jobs.agent_id` and `jobs.attempt`, which only the scheduler
writes, and the scheduler announces every change of them (JobChanged), which keeps the check's cache true; job
events get the same check (jobs/events.py).

Nothing shipped for a job's current attempt is lost: LOG_INGEST is a work queue read through one durable consumer,
and a batch is acked only once LOGS has stored it (or refused it for good, or holds it already). A relay that stops
or dies leaves what it had not acked to the next one (a restarted or another scheduler), which gets it again after
ACK_WAIT_S; a relay that waits on LOGS keeps its batches with `in_progress()`.

Each job's batches are published one at a time and in line order (order.py), by one lane per job (lanes of
different jobs run side by side). A lane knows the job's last batch in LOGS, its tip: stream sequence, attempt and last
line number, read from LOGS when the lane starts and then taken from its own publishes. It publishes with
Nats-Expected-Last-Subject-Sequence = the tip, so a batch lands only right after the one it was placed after, even
with other relays at work (a refused publish reads the tip again). A batch:

- that LOGS holds already (a redelivery) is acked and dropped;
- that follows the tip (the next line number, or line 1 of a newer attempt) is published;
- that leaves a gap waits up to HOLD_S for the batches before it (redelivered after a relay died holding them, or
  published by another relay meanwhile: the tip is read again while it waits), and is then published anyway, since
  a batch that the agent never got into LOG_INGEST never comes and the lines after it must not wait for ever. While
  LOG_INGEST still holds more of the job's batches than the lane (another relay took them and cannot place them
  yet, e.g. its Postgres read failing in an outage), it waits on, up to MAX_HOLD_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from services.common import contracts
from services.common.bus import consume
from services.common.contracts import Subjects

from .gate import Assignments
from .order import DUPLICATE, GAP, Tip, heads, placement, tip_of

log = logging.getLogger(__name__)

_changes = msgspec.json.Decoder(contracts.JobChanged)

ACK_WAIT_S = 5.0  # how soon a dead relay's batches come back to the next one
KEEP_ALIVE_S = ACK_WAIT_S / 3  # a batch waiting in a lane is touched this often, so it is not redelivered
HOLD_S = ACK_WAIT_S + 3.0  # how long a batch after a gap waits for the batches before it
MAX_HOLD_S = 60.0  # ... and how long when LOG_INGEST shows another relay still holds them
HELD_POLL_S = 1.0
INGEST_STREAM = "LOG_INGEST"
GAP_POLL_S = 0.1  # while it waits, the tip is read again this often (another relay may have moved it)
LANE_IDLE_S = 10.0  # a lane with nothing to do ends; the job's next batch starts a new one
MAX_PENDING = 4_096  # batches delivered and not acked yet, across every lane
PUBLISH_TIMEOUT_S = 5.0
WARN_EVERY_S = 10.0
EXPECT_LAST = "Nats-Expected-Last-Subject-Sequence"
WRONG_LAST_SEQUENCE = 10071  # JetStream's error code when that expectation fails


@dataclass(eq=False)
class _Batch:
    msg: Any
    sender: str
    attempt: int
    first: int
    last: int
    arrived: float
    touched: float


@dataclass(eq=False)
class _Lane:
    """One job's batches, waiting in (attempt, first line) order, and the job's tip in LOGS."""

    job_id: str
    waiting: list[tuple[tuple[int, int, int], _Batch]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    tip: Tip | None = None
    tip_read: bool = False  # the tip was read from LOGS since the last publish (not just what we stored last)
    task: asyncio.Task | None = None


class _Warnings:
    """A warning per dropped batch, but at most one per agent every `every_s`, counting the ones left unsaid."""

    def __init__(self, every_s: float, clock) -> None:
        self.every_s, self.clock = every_s, clock
        self.last: dict[str, float] = {}
        self.unsaid: dict[str, int] = {}

    def dropped(self, agent_id: str, job_id: str, why: str) -> None:
        now, last = self.clock(), self.last.get(agent_id)
        if last is not None and now - last < self.every_s:
            self.unsaid[agent_id] = self.unsaid.get(agent_id, 0) + 1
            return
        self.last[agent_id] = now
        more = self.unsaid.pop(agent_id, 0)
        log.warning(
            "dropped a log batch from agent %s for job %s: %s%s",
            agent_id,
            job_id,
            why,
            f" ({more} more from this agent since the last warning)" if more else "",
        )


class LogRelay:
    """Copies agents' log batches to LOGS when the gate lets them through, each job's in order."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        gate: Assignments,
        *,
        hold_s: float = HOLD_S,
        ack_wait_s: float = ACK_WAIT_S,
        clock=time.monotonic,
    ):
        self.nc, self.js, self.gate = nc, js, gate
        self.hold_s, self.ack_wait_s, self.clock = hold_s, ack_wait_s, clock
        self.lanes: dict[str, _Lane] = {}
        self.warnings = _Warnings(WARN_EVERY_S, clock)
        self.counts = {"relayed": 0, "refused": 0, "duplicates": 0, "gaps": 0}
        self._order = itertools.count()
        self._tasks: list[asyncio.Task] = []
        self._changes = None

    async def start(self) -> None:
        """Follow job changes (for the gate's cache), then consume LOG_INGEST."""
        self._changes = await self.nc.subscribe(Subjects.JOB_CHANGED_ALL, cb=self._on_change)
        self._tasks = [
            asyncio.create_task(
                consume(
                    self.js,
                    subject=Subjects.JOB_LOGS_ALL,
                    stream="LOG_INGEST",
                    durable=contracts.LOG_RELAY_CONSUMER,
                    handle=self.take,
                    ack_wait=self.ack_wait_s,
                    max_ack_pending=MAX_PENDING,
                )
            ),
            asyncio.create_task(self._keep_alive_forever()),
        ]

    async def stop(self) -> None:
        """Stop; what was not acked is redelivered to the next relay."""
        if self._changes is not None:
            with contextlib.suppress(Exception):
                await self._changes.unsubscribe()
        tasks = self._tasks + [lane.task for lane in self.lanes.values() if lane.task]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.lanes.clear()

    async def reconnected(self) -> None:
        """Job changes announced while NATS was away were not heard: read every job again."""
        self.gate.clear()

    async def _on_change(self, msg) -> None:
        try:
            change = _changes.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        if change.progress is None:  # a state change (a progress point changes no agent or attempt)
            self.gate.forget(change.job_id)

    async def take(self, msg) -> None:
        """Hand a shipped batch to its job's lane (the consumer loop's handler: it never waits on NATS or Postgres,
        except to drop what is not a batch of the job its subject names)."""
        named = Subjects.job_logs_sender(msg.subject)
        try:
            head = heads.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            head = None
        if (
            named is None
            or head is None
            or head.job_id != named[1]
            or not head.lines
            or head.lines[-1].seq < head.lines[0].seq
        ):
            self.counts["refused"] += 1
            tokens = msg.subject.split(".")  # job.logs.<agent_id>...: NATS let only that agent publish it
            self.warnings.dropped(
                tokens[2] if len(tokens) > 2 else "?",
                named[1] if named else "?",
                f"not a log batch of the job its subject names ({msg.subject})",
            )
            await msg.term()
            return
        agent_id, job_id = named
        now = self.clock()
        batch = _Batch(msg, agent_id, head.attempt, head.lines[0].seq, head.lines[-1].seq, now, now)
        lane = self.lanes.get(job_id)
        if lane is None:
            lane = self.lanes[job_id] = _Lane(job_id)
            lane.task = asyncio.create_task(self._run_lane(lane))
        heapq.heappush(lane.waiting, ((batch.attempt, batch.first, next(self._order)), batch))
        lane.arrived.set()

    async def _run_lane(self, lane: _Lane) -> None:
        while True:
            lane.arrived.clear()
            if not lane.waiting:
                if not await _wait(lane.arrived, LANE_IDLE_S) and not lane.waiting:
                    del self.lanes[lane.job_id]  # no await since the check: take() cannot slip in between
                    return
                continue
            try:
                await self._relay_first(lane)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("log relay for job %s failed; retrying", lane.job_id)
                await asyncio.sleep(1)

    async def _relay_first(self, lane: _Lane) -> None:
        """Decide about the lane's first batch: drop it, publish it, or wait a little for what comes before it."""
        batch = lane.waiting[0][1]
        why = await self.gate.refusal(lane.job_id, batch.sender, batch)
        if why is not None:
            self.counts["refused"] += 1
            self.warnings.dropped(batch.sender, lane.job_id, why)
            await self._done(lane, batch)
            return
        tip = lane.tip if lane.tip is not None else await self._read_tip(lane)
        where = placement(tip, batch.attempt, batch.first, batch.last)
        if where == GAP and self.clock() < batch.arrived + self.hold_s:
            if lane.tip_read:  # LOGS has not got the lines before it: they may arrive here, or another relay send them
                await _wait(lane.arrived, GAP_POLL_S)
            await self._read_tip(lane)
            return
        if where == GAP and self.clock() < batch.arrived + MAX_HOLD_S and await self._held_elsewhere(lane):
            # The lines before it are still in LOG_INGEST, taken by another relay that cannot place them yet (its
            # Postgres read failing in an outage, say): they come, so they are waited for, up to MAX_HOLD_S.
            await _wait(lane.arrived, HELD_POLL_S)
            await self._read_tip(lane)
            return
        if where == DUPLICATE:
            self.counts["duplicates"] += 1
            await self._done(lane, batch)
            return
        if where == GAP:
            self.counts["gaps"] += 1
            log.warning(
                "job %s: lines before %d of attempt %d never came; relaying from there",
                lane.job_id,
                batch.first,
                batch.attempt,
            )
        if await self._publish(lane, batch):
            await self._done(lane, batch)

    async def _publish(self, lane: _Lane, batch: _Batch) -> bool:
        """Store the batch in LOGS right after the lane's tip, retrying until LOGS answers. False when LOGS holds
        something newer than the tip (another relay's publish, or our own that timed out): the tip is read again."""
        delay = 0.1
        while True:
            tip = lane.tip if lane.tip is not None else await self._read_tip(lane)
            try:
                ack = await self.js.publish(
                    Subjects.logs(lane.job_id),
                    batch.msg.data,
                    timeout=PUBLISH_TIMEOUT_S,
                    headers={EXPECT_LAST: str(tip.stream_seq)},
                )
            except BadRequestError as exc:
                if exc.err_code == WRONG_LAST_SEQUENCE:
                    await self._read_tip(lane)
                    return False
                log.error("LOGS refused a batch of job %s for good (%s); dropped", lane.job_id, exc)
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS or JetStream away: the batch waits, kept alive
                log.warning("log batch of job %s not stored in LOGS yet (%s); retrying", lane.job_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            lane.tip, lane.tip_read = Tip(ack.seq, batch.attempt, batch.last), False
            self.counts["relayed"] += 1
            return True

    async def _held_elsewhere(self, lane: _Lane) -> bool:
        """Whether LOG_INGEST holds more batches of the job than this lane does: some are unacked with another relay
        (a work queue keeps a message until it is acked). False when that cannot be told (then the gap is crossed)."""
        try:
            info = await self.js.stream_info(INGEST_STREAM, subjects_filter=Subjects.job_logs("*", lane.job_id))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - not knowing is the old rule: relay over the gap
            return False
        stored = sum((info.state.subjects or {}).values())
        return stored > len(lane.waiting)

    async def _read_tip(self, lane: _Lane) -> Tip:
        """Set (and return) the lane's tip from the job's last batch in LOGS (retried while NATS is away)."""
        lane.tip, lane.tip_read = await self._last_in_logs(lane.job_id), True
        return lane.tip

    async def _last_in_logs(self, job_id: str) -> Tip:
        delay = 0.1
        while True:
            try:
                stored = await self.js.get_last_msg("LOGS", Subjects.logs(job_id))
            except NotFoundError:
                return Tip()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("could not read the last log batch of job %s (%s); retrying", job_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if stored.seq is None or stored.data is None:  # a stored message always has both
                raise RuntimeError(f"LOGS returned a message without a sequence or data for job {job_id}")
            return tip_of(stored.seq, stored.data)

    async def _done(self, lane: _Lane, batch: _Batch) -> None:
        """Take `batch` out of its lane (wherever it is now: earlier batches may have arrived meanwhile) and ack it."""
        if lane.waiting and lane.waiting[0][1] is batch:
            heapq.heappop(lane.waiting)
        else:
            lane.waiting = [entry for entry in lane.waiting if entry[1] is not batch]
            heapq.heapify(lane.waiting)
        with contextlib.suppress(Exception):  # an ack lost with the connection: the batch comes back, a duplicate
            await batch.msg.ack()

    async def _keep_alive_forever(self) -> None:
        """Tell JetStream that batches still waiting in a lane are being worked on, so it does not redeliver them."""
        while True:
            await asyncio.sleep(KEEP_ALIVE_S)
            now = self.clock()
            for lane in list(self.lanes.values()):
                for _, batch in list(lane.waiting):
                    if now - batch.touched >= KEEP_ALIVE_S:
                        batch.touched = now
                        with contextlib.suppress(Exception):
                            await batch.msg.in_progress()


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """Whether `event` was set within `timeout` (asyncio.timeout, not wait_for: a cancel is never swallowed)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
            return True
    return False
