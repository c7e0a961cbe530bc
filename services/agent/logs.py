"""Ship a job's output: numbered lines, batched to `logs.<job_id>` and appended to its log file."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from nats.js import JetStreamContext

from services.common import contracts

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 0.1
MAX_BATCH = 500
TAIL_LINES = 30


class LogShipper:
    """One per running job. `add()` never blocks on NATS; a flusher task publishes batches."""

    def __init__(self, js: JetStreamContext, job_id: str, log_path: Path):
        self.js = js
        self.job_id = job_id
        self.subject = contracts.Subjects.logs(job_id)
        self.seq = 0
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._pending: list[contracts.LogLine] = []
        self._file = open(log_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in close()
        self._wake = asyncio.Event()
        self._flusher = asyncio.create_task(self._flush_forever())

    def add(self, stream: str, text: str) -> None:
        self.seq += 1
        now = datetime.now(UTC)
        self._pending.append(contracts.LogLine(seq=self.seq, stream=stream, at=now, text=text))
        self._file.write(f"{text}\n" if stream != "system" else f"[platform] {text}\n")
        if stream != "system":
            self.tail.append(text)
        if len(self._pending) >= MAX_BATCH:
            self._wake.set()

    async def _flush_forever(self) -> None:
        while True:
            # Not wait_for: on 3.11 it swallows a cancel that lands as the event fires, and close() hangs.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_EVERY_S):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            message = contracts.LogBatch(job_id=self.job_id, lines=tuple(batch))
            try:
                await self.js.publish(self.subject, contracts.encode(message))
            except Exception:  # noqa: BLE001 - the file keeps every line; viewers miss this batch
                log.exception("log batch for %s not published", self.job_id)

    async def close(self) -> None:
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher
        await self.flush()
        self._file.close()
