"""Check a large JSON-lines upload's rows in worker processes while its bytes are still streaming in.

The row check is CPU work that holds the GIL, so it runs in processes of its own (a pool started at the
first large upload and kept): as the receiver writes a file, every SEGMENT_BYTES of whole lines becomes a
range (from just after one newline to just after another) that a worker reads back from the page cache and
checks (linescan.check_range). When the last byte is in, most of the file is checked already; the ranges'
results are joined in order (linescan.combine), so the rows, bad rows, line numbers and messages are exactly
those of one pass over the file. A file smaller than a segment is left to the check after the upload (no
process to wake for it), as is any file whose format or column mapping is not known when it starts (fields
sent after the file), or a `.json` file that is not JSON lines. JSON-lines files checked only once they are on
disk (an archive's, a registered file, those) are cut into ranges for the workers too (`check_file`).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from .linescan import Partial, check_range, combine

log = logging.getLogger(__name__)

SEGMENT_BYTES = 8 << 20
MAX_AUTO_WORKERS = 4
_SPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Plan:
    """What a file's rows are checked against: the format, its role -> column mapping and sharegpt tags."""

    fmt: str
    columns: Mapping[str, str]
    tags: Mapping[str, str]


class CheckPool:
    """The worker processes of one service; started at the first range, stopped with the service."""

    def __init__(self, workers: int = 0) -> None:
        # by default one CPU is left to the process receiving the upload (parsing, hashing, writing)
        self.workers = workers or max(1, min((os.cpu_count() or 1) - 1, MAX_AUTO_WORKERS))
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()  # ranges are sent from the uploads' writer threads

    def submit(self, path: Path, plan: Plan, start: int, end: int | None) -> Future[Partial]:
        with self._lock:
            if self._executor is None:
                # spawn: a fresh interpreter, never a fork of a process with an event loop and threads
                context = multiprocessing.get_context("spawn")
                self._executor = ProcessPoolExecutor(self.workers, mp_context=context)
            executor = self._executor
        try:
            return executor.submit(check_range, path, plan.fmt, dict(plan.columns), dict(plan.tags), start, end)
        except (BrokenProcessPool, RuntimeError) as exc:  # a worker died, or the pool was closed meanwhile
            self.close(executor)
            failed: Future[Partial] = Future()
            failed.set_exception(exc)
            return failed

    def close(self, only: ProcessPoolExecutor | None = None) -> None:
        """Stop the workers (at shutdown; after a worker died, so that the next upload starts a fresh pool);
        `only`: unless the pool is another one by now."""
        with self._lock:
            if only is not None and self._executor is not only:
                return
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def line_starts(path: Path, every: int = SEGMENT_BYTES) -> list[int]:
    """Where ranges of about `every` bytes start, each just after a newline (blocking)."""
    size, starts = path.stat().st_size, [0]
    with open(path, "rb") as handle:
        position = every
        while position < size:
            handle.seek(position)
            while (chunk := handle.read(64 << 10)) and (newline := chunk.find(b"\n")) < 0:
                position += len(chunk)
            if not chunk:
                break
            position += newline + 1
            if position < size:
                starts.append(position)
            position += every
    return starts


async def gather(pool: CheckPool, futures: list[Future[Partial]], name: str) -> Partial | None:
    """The ranges' checks joined in order; None when a worker failed or its pool was closed (another upload's
    worker died): the caller checks the file itself."""
    try:
        parts = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
    except (Exception, asyncio.CancelledError) as exc:
        task = asyncio.current_task()
        if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
            raise  # the upload itself is cancelled (its client left), not a range
        log.warning("a row-check worker failed; %s is checked again in the service", name, exc_info=True)
        for future in futures:
            future.cancel()
        pool.close()
        return None
    return combine(parts)


async def check_file(pool: CheckPool, path: Path, plan: Plan) -> Partial | None:
    """A JSON-lines file already on disk (an archive's, a registered one), its ranges checked by the workers."""
    starts = await asyncio.to_thread(line_starts, path)
    ends: list[int | None] = [*starts[1:], None]
    return await gather(pool, [pool.submit(path, plan, a, b) for a, b in zip(starts, ends, strict=True)], path.name)


@dataclass
class StreamCheck:
    """The ranges of one file being received, handed to the pool as whole lines arrive."""

    pool: CheckPool
    path: Path
    plan: Plan
    flush: Callable[[], None]
    """Writes what the receiver buffered to the file, so a worker reads every byte of its range."""
    json_suffix: bool
    """A `.json` file: checked as JSON lines only if its first value is an object (else nothing is sent)."""
    offset: int = 0
    start: int = 0
    line_end: int = 0
    decided: bool = False
    futures: list[Future[Partial]] = field(default_factory=list)
    dropped: bool = False

    def data(self, chunk: bytes) -> None:
        """The next bytes of the file, already written."""
        if self.dropped:
            return
        if not self.decided and not self._decide(chunk):
            return
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            self.line_end = self.offset + newline + 1
        self.offset += len(chunk)
        if self.line_end - self.start >= SEGMENT_BYTES:
            self._send(self.line_end)

    def _decide(self, chunk: bytes) -> bool:
        """At the first byte that is not white space: JSON lines (go on) or not (drop)."""
        self.offset += len(chunk)  # undone below when the stream goes on
        head = chunk[3:] if self.offset == len(chunk) and chunk.startswith(_BOM) else chunk
        first = head.lstrip(_SPACE)[:1]
        if not first:
            return False  # only white space so far; nothing is sent before a decision
        self.offset -= len(chunk)
        self.decided = True
        if self.json_suffix and first != b"{":
            self.dropped = True
            return False
        return True

    def _send(self, end: int | None) -> None:
        self.flush()
        self.futures.append(self.pool.submit(self.path, self.plan, self.start, end))
        self.start = end or self.start

    def end(self) -> None:
        """The file is complete: its last range goes too, unless nothing was sent (a small file)."""
        if self.futures and not self.dropped and self.offset > self.start:
            self._send(None)

    def cancel(self) -> None:
        for future in self.futures:
            future.cancel()

    async def result(self) -> Partial | None:
        """The whole file's check, or None when it was not checked here (the check after the upload does it)."""
        if self.dropped or not self.futures:
            return None
        return await gather(self.pool, self.futures, self.path.name)
