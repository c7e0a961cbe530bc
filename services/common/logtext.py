"""A job's log as text: the line format of its log file, and the same text built from the LOGS stream.

The agent writes each line it ships to the job's log file as `line_text` renders it. In `objects` storage mode
that file is on the agent's host, so a running job's log is read over NATS instead: its batches in LOGS
(`logs.<job_id>`, what the log relay stored, in order), oldest first, each line once and in (attempt, line number)
order, as the gateway's socket replay sends them (services/gateway/logs.py). The text is streamed (a few messages
at a time, memory stays flat) and has a known length before it is sent: the stored batches up to the last one
there when asked (`measure`) are read once to count their bytes and again to send them, so a range of it can be
answered. Its ETag names the job and the first and last batch: a log that grew (or lost its oldest batches to the
stream's limits) has a new one.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import msgspec
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from .contracts import LogBatch, Subjects
from .ranges import Reader

LOGS_STREAM = "LOGS"
READ_BATCH = 64  # LOGS messages per pull (each up to 500 lines)
READ_WAIT_S = 5.0  # a pull that brings nothing for this long: the rest of the job's batches are gone
START = (0, 0)  # (attempt, line number) before the first line

_batches = msgspec.json.Decoder(LogBatch)


def line_text(stream: str, text: str) -> str:
    """One line of a job's log file: the platform's own lines (`system`) marked, the engine's as printed."""
    return f"[platform] {text}\n" if stream == "system" else f"{text}\n"


@dataclass(frozen=True)
class StoredLog:
    """The job's batches in LOGS when it was measured: stream sequences of the first and last, and the text's
    length."""

    job_id: str
    first_seq: int
    last_seq: int
    size: int

    @property
    def etag(self) -> str:
        seed = f"{self.job_id}:{self.first_seq}:{self.last_seq}:{self.size}".encode()
        return '"logs-' + hashlib.sha256(seed).hexdigest()[:32] + '"'


async def measure(js: JetStreamContext, job_id: str) -> StoredLog | None:
    """How much text the job's log holds in LOGS now; None when nothing is stored for it."""
    try:
        last = (await js.get_last_msg(LOGS_STREAM, Subjects.logs(job_id))).seq
    except NotFoundError:
        return None
    if last is None:
        return None
    first, size = 0, 0
    async with contextlib.aclosing(_texts(js, job_id, last)) as texts:
        async for seq, text in texts:
            first = first or seq
            size += len(text)
    return StoredLog(job_id, first, last, size) if first else None


def reader(js: JetStreamContext, log: StoredLog) -> Reader:
    """Bytes `start` to `start + length` of the measured text (a ranges.Reader): it ends short when the log's
    first batch is no longer the one measured (the stream dropped it meanwhile)."""

    async def read(start: int, length: int) -> AsyncIterator[bytes]:
        at, end = 0, start + length
        async with contextlib.aclosing(_texts(js, log.job_id, log.last_seq)) as texts:
            async for seq, text in texts:
                if at == 0 and seq != log.first_seq:
                    return
                piece, at = text[max(start - at, 0) : end - at], at + len(text)
                if piece:
                    yield piece
                if at >= end:
                    return

    return read


async def _texts(js: JetStreamContext, job_id: str, last_seq: int) -> AsyncGenerator[tuple[int, bytes], None]:
    """(stream sequence, text) of each of the job's batches up to `last_seq`, only the lines past those already
    given (the order of the socket replay: a batch's lines at or before the last position are not given again)."""
    after = START
    async with contextlib.aclosing(_stored(js, Subjects.logs(job_id), last_seq)) as stored:
        async for seq, data in stored:
            try:
                batch = _batches.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            lines = [line for line in batch.lines if (batch.attempt, line.seq) > after]
            if lines:
                after = (batch.attempt, lines[-1].seq)
                yield seq, "".join(line_text(line.stream, line.text) for line in lines).encode(errors="replace")


async def _stored(js: JetStreamContext, subject: str, last_seq: int) -> AsyncGenerator[tuple[int, bytes], None]:
    """The messages LOGS holds on `subject`, oldest first, up to stream sequence `last_seq`: a pull consumer that
    acks nothing takes READ_BATCH at a time."""
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE,
        deliver_policy=api.DeliverPolicy.ALL,
        inactive_threshold=READ_WAIT_S * 3,
        mem_storage=True,
    )
    sub = await js.pull_subscribe(subject, durable=None, stream=LOGS_STREAM, config=config)
    try:
        while True:
            try:
                msgs = await sub.fetch(batch=READ_BATCH, timeout=READ_WAIT_S)
            except TimeoutError:
                return
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                if seq > last_seq:
                    return
                yield seq, msg.data
                if seq == last_seq:
                    return
            if msgs[-1].metadata.num_pending == 0:
                return
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
