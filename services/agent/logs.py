"""Ship a job's output: numbered lines appended to its log file and batched to `job.logs.<agent_id>.<job_id>`, from
where the scheduler's relay copies them to `logs.<job_id>` (the LOGS stream viewers read) once it has checked that
the job's current attempt runs on this agent (services/scheduler/log_relay.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext

from services.common import contracts
from services.common.logtext import line_text
from services.common.private import open_private
from services.common.redaction import REDACTED

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 0.1
MAX_BATCH = 500
SEND_S = 30.0  # how long a batch JetStream does not take is sent again
TAIL_LINES = 30


Shipped = Callable[[int, int, Any], None]


class LogShipper:
    """One per running job. `add()` never blocks on NATS; a flusher task publishes batches.

    Every batch carries `attempt`, the dispatch's (the relay drops batches of an attempt the job no longer
    runs). A job picked up again after an agent restart gets a shipper that goes on where the last one
    stopped: `seq` is the last line number shipped, and `keep_bytes` the log file's length after
    that line (what an agent wrote to the file but never published is cut off, and read again).
    `on_shipped(seq, file_bytes, mark)` is told after every batch how far the lines reach; `mark` is
    the last non-None mark given to `add()` (the runtime's position in the engine's output).
    """

    def __init__(
        self,
        js: JetStreamContext,
        job_id: str,
        log_path: Path,
        *,
        agent_id: str,
        attempt: int = 0,
        seq: int = 0,
        keep_bytes: int | None = None,
        on_shipped: Shipped | None = None,
    ):
        self.js = js
        self.job_id = job_id
        self.attempt = attempt
        self.subject = contracts.Subjects.job_logs(agent_id, job_id)  # its own: the only one its NATS user may use
        self.seq = seq
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.on_shipped = on_shipped
        self._pending: list[tuple[contracts.LogLine, Any, int]] = []  # (line, mark, file bytes after it)
        self._mark: Any = None
        self._file = open_private(log_path)  # a job's output is its owner's: 0600
        size = self._file.seek(0, os.SEEK_END)
        if keep_bytes is not None and keep_bytes < size:
            self._file.truncate(keep_bytes)
            size = keep_bytes
        self.bytes = size
        self._wake = asyncio.Event()
        self._closing = False
        self._hidden: list[str] = []
        self._flusher = asyncio.create_task(self._flush_forever())

    def hide(self, values) -> None:
        """Never write or ship these values (a job's secrets, services/agent/jobsecrets.py): each is replaced by
        [redacted] in every line added from now on, in the file, the batches and the tail alike."""
        self._hidden = sorted({*self._hidden, *(value for value in values if value)}, key=len, reverse=True)

    def add(self, stream: str, text: str, mark: Any = None) -> None:
        for value in self._hidden:  # the longest first: one secret holding another is hidden whole
            text = text.replace(value, REDACTED)
        self.seq += 1
        now = datetime.now(UTC)
        data = line_text(stream, text).encode(errors="replace")
        self._file.write(data)
        self.bytes += len(data)
        self._pending.append((contracts.LogLine(seq=self.seq, stream=stream, at=now, text=text), mark, self.bytes))
        if stream != "system":
            self.tail.append(text)
        if len(self._pending) >= MAX_BATCH:
            self._wake.set()

    async def _flush_forever(self) -> None:
        while not self._closing:
            # Not wait_for: on 3.11 it swallows a cancel that lands as the event fires.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_EVERY_S):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        while self._pending:
            # A batch leaves the queue only once sent: a cancel mid-publish must not skip it, or leave the
            # line number ahead of the mark `on_shipped` reports (an agent restart would repeat lines).
            batch = self._pending[:MAX_BATCH]
            message = contracts.LogBatch(
                job_id=self.job_id, attempt=self.attempt, lines=tuple(line for line, _, _ in batch)
            )
            await self._send(message)
            del self._pending[: len(batch)]
            for _, mark, _ in batch:
                if mark is not None:
                    self._mark = mark
            if self.on_shipped is not None:
                last, _, size = batch[-1]
                self.on_shipped(last.seq, size, self._mark)

    async def _send(self, message: contracts.LogBatch) -> None:
        """Publish a batch, again and again for up to SEND_S while JetStream does not take it (a NATS node went and
        LOG_INGEST elects a leader): the same id each time, so one that did land is not stored twice. Past that it is
        given up (the relay, waiting for it, then relays over the gap)."""
        lines = message.lines
        msg_id = f"{self.subject}.{self.attempt}.{lines[0].seq}-{lines[-1].seq}" if lines else None
        deadline = asyncio.get_running_loop().time() + SEND_S
        delay = 0.2
        while True:
            try:
                await self.js.publish(
                    self.subject, contracts.encode(message), headers={"Nats-Msg-Id": msg_id} if msg_id else None
                )
                return
            except Exception:
                if asyncio.get_running_loop().time() > deadline:
                    log.exception("log batch for %s not published", self.job_id)
                    return
                log.warning("log batch for %s not taken yet; sending it again", self.job_id)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def close(self) -> None:
        """Ship what is left and close the file; a batch being sent is let finish, never cancelled."""
        self._closing = True
        self._wake.set()
        await self._flusher
        await self.flush()
        self._file.close()
