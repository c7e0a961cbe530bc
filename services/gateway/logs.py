"""Job logs to browsers: one NATS subscription per job, fanned out in memory to its viewers.

A viewer first gets the stored lines (JetStream replay, after the last position it saw), then the live
ones. Each viewer has a bounded queue: a viewer that falls behind is dropped, nobody else slows down.

A line's position is (attempt, line number): line numbers start at 1 again in each attempt of a job (a retry,
a re-queue), so a viewer resumes after `<attempt>.<seq>` and every frame says its attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from services.common import contracts
from services.common.contracts import Subjects

log = logging.getLogger(__name__)

VIEWER_QUEUE = 256  # batches
REPLAY_IDLE_S = 2.0

_batch_decoder = msgspec.json.Decoder(contracts.LogBatch)


class Frame(msgspec.Struct, frozen=True):
    """A batch as received, and the text every viewer that saw none of it is sent (encoded once)."""

    batch: contracts.LogBatch
    text: str


class Viewer:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Frame] = asyncio.Queue(maxsize=VIEWER_QUEUE)
        self.dropped = asyncio.Event()
        # Set when this gateway's NATS connection came back: live lines published meanwhile never reached it (core
        # NATS is at most once), so the viewer reads them from LOGS before it goes on.
        self.behind = asyncio.Event()

    def offer(self, frame: Frame) -> None:
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.dropped.set()


class Topic:
    """The live lines of one job and who watches them."""

    def __init__(self) -> None:
        self.viewers: set[Viewer] = set()
        self.subscription: Subscription | None = None  # set once subscribed

    async def on_message(self, msg) -> None:
        try:
            batch = _batch_decoder.decode(msg.data)
        except msgspec.ValidationError:
            return
        frame = Frame(batch, frame_text(batch.job_id, batch.attempt, lines_after(batch, START)))
        for viewer in list(self.viewers):
            viewer.offer(frame)


class LogHub:
    def __init__(self, nc: Client, js: JetStreamContext):
        self.nc, self.js = nc, js
        self.topics: dict[str, Topic] = {}

    async def attach(self, job_id: str) -> Viewer:
        topic = self.topics.get(job_id)
        if topic is None:
            topic = self.topics[job_id] = Topic()
            topic.subscription = await self.nc.subscribe(Subjects.logs(job_id), cb=topic.on_message)
        viewer = Viewer()
        topic.viewers.add(viewer)
        return viewer

    async def reconnected(self) -> None:
        """NATS is back after a break: every viewer may have missed live batches; each catches up from LOGS."""
        for topic in self.topics.values():
            for viewer in topic.viewers:
                viewer.behind.set()

    async def detach(self, job_id: str, viewer: Viewer) -> None:
        topic = self.topics.get(job_id)
        if topic is None:
            return
        topic.viewers.discard(viewer)
        if not topic.viewers:
            del self.topics[job_id]
            if topic.subscription is not None:  # None while its first attach is still subscribing
                with contextlib.suppress(Exception):
                    await topic.subscription.unsubscribe()

    async def replay(self, job_id: str):
        """Stored batches of a job, oldest first, up to what was stored when asked."""
        subject = Subjects.logs(job_id)
        try:
            last = (await self.js.get_last_msg("LOGS", subject)).seq
        except NotFoundError:
            return
        assert last is not None  # a stored message always comes with its sequence
        sub = await self.js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
        try:
            while True:
                msg = await sub.next_msg(timeout=REPLAY_IDLE_S)
                with contextlib.suppress(msgspec.ValidationError):
                    yield _batch_decoder.decode(msg.data)
                if msg.metadata.sequence.stream >= last:
                    return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


Position = tuple[int, int]  # (attempt, line number): the order of a job's lines across its attempts
START: Position = (0, 0)


def parse_position(text: str | None) -> Position | None:
    """`<attempt>.<seq>` as a viewer resumes from; a plain `<seq>` is a line of the first attempt (what viewers sent
    before attempts were told apart); None when malformed."""
    if not text:
        return START
    attempt, dot, seq = text.partition(".")
    if not dot:
        attempt, seq = "1", attempt
    if not (attempt.isdigit() and seq.isdigit()) or len(text) > 24:
        return None
    return int(attempt), int(seq)


def follows(batch: contracts.LogBatch, after: Position) -> bool:
    """Whether the batch's first line comes right after `after`: the next line of the attempt, or the first line
    of a later one. A batch that does not leaves a gap a viewer fills from LOGS first."""
    if not batch.lines:
        return True
    first = batch.lines[0].seq
    return first == after[1] + 1 if batch.attempt == after[0] else batch.attempt > after[0] and first == 1


def position_of(batch: contracts.LogBatch) -> Position:
    """Where a batch ends."""
    return (batch.attempt, batch.lines[-1].seq) if batch.lines else (batch.attempt, 0)


def lines_after(batch: contracts.LogBatch, after: Position) -> list[dict]:
    """The batch's lines after position `after`."""
    return [
        {"seq": line.seq, "stream": line.stream, "at": line.at.isoformat(), "text": line.text}
        for line in batch.lines
        if (batch.attempt, line.seq) > after
    ]


_frame_encoder = msgspec.json.Encoder()


def frame_text(job_id: str, attempt: int, lines: list[dict]) -> str:
    """The WebSocket frame viewers receive: {"job_id", "attempt", "lines": [{seq, stream, at, text}]}."""
    return _frame_encoder.encode({"job_id": job_id, "attempt": attempt, "lines": lines}).decode()


def notice_text(job_id: str, state: str, reason: str | None, message: str | None) -> str:
    """The last frame of a job whose agent lost it: {"job_id", "notice": {state, reason, message}}."""
    notice = {"state": state, "reason": reason, "message": message}
    return _frame_encoder.encode({"job_id": job_id, "notice": notice}).decode()
