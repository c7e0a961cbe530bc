"""A container the docker runtime started or found again: its log lines (with a position an agent restart
can resume from), its exit and a stop. The long blocking calls each get a daemon thread of their own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import threading
from collections.abc import AsyncIterator, Callable, Mapping, MutableSet
from datetime import UTC, datetime
from typing import Any, TypeVar

import docker
import docker.errors

from .base import ExitInfo

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 1024 * 1024  # a longer line without a newline is cut, like the process runtime's limit
READERS_GRACE_S = 10.0  # how long wait() lets the log readers drain after the exit

T = TypeVar("T")


def _in_thread(fn: Callable[[], T], name: str) -> asyncio.Future[T]:
    """Run a long blocking call in its own daemon thread; its result as a future of the running loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            result, exc = fn(), None
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting coroutine
            result, exc = None, error
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


_TIMESTAMP = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z ")


def _frame_ns(stamp: bytes, fraction: bytes | None) -> int:
    whole = datetime.fromisoformat(stamp.decode()).replace(tzinfo=UTC)
    return int(whole.timestamp()) * 1_000_000_000 + int((fraction or b"0").ljust(9, b"0"))


class _LineReader:
    """Turns one stream's log messages ("<RFC 3339 nano timestamp> <bytes>") into whole lines.

    Docker gives every message (one line, or a piece of a line over 16 KiB) a timestamp, and the
    pieces of one line share theirs; (timestamp, messages taken at it) is therefore a position in
    the log that a second read (`resume_after`) can skip to, even from another process.
    """

    def __init__(self, stream: str):
        self.stream = stream
        self.buffer = b""
        self.last_ns = 0  # the timestamp of the last message taken
        self.at_last = 0  # how many messages carried that timestamp
        self.settled: tuple[int, int] = (0, 0)  # (last_ns, at_last) when the last whole line was handed out
        self._skip: tuple[int, int] | None = None  # resuming: messages before this one were taken already

    def resume_after(self, ns: int, count: int) -> None:
        """Read again from a position: drop messages older than `ns` and the first `count` at `ns`."""
        self.last_ns, self.at_last = ns, count
        if not self.buffer:
            self.settled = (ns, count)
        self._skip = (ns, count)

    def feed(self, frame: bytes) -> list[tuple[str, str]]:
        match = _TIMESTAMP.match(frame)
        if match:
            ns = _frame_ns(match.group(1), match.group(2))
            if self._skip is not None:
                skip_ns, left = self._skip
                if ns < skip_ns:
                    return []
                if ns == skip_ns and left > 0:
                    self._skip = (skip_ns, left - 1)
                    return []
                self._skip = None
            self.last_ns, self.at_last = ns, (self.at_last + 1 if ns == self.last_ns else 1)
            frame = frame[match.end() :]
        self.buffer += frame
        *complete, self.buffer = self.buffer.split(b"\n")
        if len(self.buffer) > MAX_LINE_BYTES:
            complete.append(self.buffer)
            self.buffer = b""
        if not self.buffer:
            self.settled = (self.last_ns, self.at_last)
        return [(self.stream, line.decode(errors="replace").rstrip("\r")) for line in complete]

    def close(self) -> list[tuple[str, str]]:
        rest, self.buffer = self.buffer, b""
        self.settled = (self.last_ns, self.at_last)
        return [(self.stream, rest.decode(errors="replace").rstrip("\r"))] if rest else []


class DockerRun:
    """A started (or found again) container: its log lines, its exit, a stop."""

    def __init__(
        self,
        client: docker.DockerClient,
        container_id: str,
        name: str,
        *,
        image: str,
        active: MutableSet[str],
        resume: Mapping[str, Any] | None = None,
    ):
        """`image`: the container's, named when its command is missing; `active`: the runtime's containers whose
        exit was not collected yet (this one leaves it at its exit); `resume`: a `position` of an earlier DockerRun
        of this container, whose lines are not read again."""
        self.client = client
        self.image = image
        self._active = active
        self.container_id = container_id
        self.name = name
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[str, list[tuple[str, str]], tuple[int, int]] | None] = asyncio.Queue(
            maxsize=1000
        )
        self._readers_done = 0  # end markers seen by lines()
        self._readers_left = 2  # reader threads still running
        self._readers_lock = threading.Lock()
        self._readers_finished = asyncio.Event()
        self._exit: asyncio.Future[ExitInfo] | None = None
        self._detached = False
        self._streams: list[Any] = []  # the open log streams, closed by detach()
        start = resume if resume and resume.get("container") == container_id else {}
        self.position: dict[str, Any] = {
            "container": container_id,
            **{s: list(start.get(s) or (0, 0)) for s in ("stdout", "stderr")},
        }
        for stream in ("stdout", "stderr"):
            threading.Thread(
                target=self._follow, args=(stream, tuple(self.position[stream])), name=f"{name}-{stream}", daemon=True
            ).start()

    # -- logs ---------------------------------------------------------------------------------------
    def _put(self, item: tuple[str, list[tuple[str, str]], tuple[int, int]] | None) -> bool:
        """Hand one batch to the loop, blocking while the queue is full; False when nobody reads any more."""
        if self._detached:
            return False
        if item is not None and not item[1]:
            return True
        put = self._queue.put(item)
        try:
            asyncio.run_coroutine_threadsafe(put, self._loop).result()
        except RuntimeError:  # the loop is closed: nobody reads these lines any more
            put.close()
            return False
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 - cancelled as the loop shut down
            return False
        return True

    def _reader_finished(self) -> None:
        with self._readers_lock:
            self._readers_left -= 1
            last = self._readers_left == 0
        if last:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._readers_finished.set)

    def _read(self, stream: str, reader: _LineReader, *, follow: bool) -> bool:
        """Read one stream from the reader's position on (`since` a second early: float seconds); False to stop."""
        since = reader.last_ns / 1e9 - 1 if reader.last_ns else None
        logs = self.client.api.logs(
            self.container_id,
            stdout=stream == "stdout",
            stderr=stream == "stderr",
            stream=True,
            timestamps=True,
            follow=follow,
            since=since,
        )
        self._streams.append(logs)
        if self._detached:  # detach() ran before this stream existed
            return False
        for frame in logs:
            if not self._put((stream, reader.feed(frame), reader.settled)):
                return False
        return not self._detached

    def _follow(self, stream: str, start: tuple[int, int]) -> None:
        """Thread: follow one of the container's streams from `start` (its first byte: (0, 0)), line by line.

        Docker's follow mode can end at the exit before the last message (a final line without a
        newline, seen with 20.10) is sent, so once it ends the stream is read again, without
        following, from the last message seen on (see _LineReader).
        """
        reader = _LineReader(stream)
        if start != (0, 0):
            reader.resume_after(*start)
        try:
            try:
                if not self._read(stream, reader, follow=True):
                    return
                reader.resume_after(reader.last_ns, reader.at_last)
                if not self._read(stream, reader, follow=False):
                    return
            except Exception as exc:  # noqa: BLE001 - the engine went away; the exit says why
                if self._detached:
                    return
                log.warning("log stream %s of %s ended: %s", stream, self.name, exc)
            if self._put((stream, reader.close(), reader.settled)):
                self._put(None)
        finally:
            self._reader_finished()

    async def lines(self) -> AsyncIterator[tuple[str, str]]:
        """Every line from the position on; `position` says how far the lines handed out so far reach."""
        while self._readers_done < 2:
            batch = await self._queue.get()
            if batch is None:
                self._readers_done += 1
                continue
            stream, items, settled = batch
            for index, item in enumerate(items):
                if index == len(items) - 1:  # a new dict: whoever kept the old one keeps what it said
                    self.position = {**self.position, stream: list(settled)}
                yield item

    def detach(self) -> None:
        """Stop following the container and leave it running (the agent stops; the next one re-attaches)."""
        self._detached = True
        for logs in list(self._streams):
            with contextlib.suppress(Exception):
                logs.close()

    # -- exit ---------------------------------------------------------------------------------------
    def _wait_blocking(self) -> ExitInfo:
        try:
            code = self.client.api.wait(self.container_id, timeout=None)["StatusCode"]
        except docker.errors.NotFound:
            return ExitInfo(
                exit_code=-1, error=f"container {self.name} disappeared while it ran", error_reason="container_lost"
            )
        except Exception as exc:  # noqa: BLE001 - the Docker engine went away (restart, crash)
            return ExitInfo(
                exit_code=-1,
                error=f"lost the Docker engine while {self.name} ran: {exc}",
                error_reason="docker_unavailable",
            )
        try:
            state = self.client.api.inspect_container(self.container_id)["State"]
        except Exception:  # noqa: BLE001 - removed already: the code is all we know
            return ExitInfo(exit_code=code)
        oom = bool(state.get("OOMKilled"))
        error = state.get("Error") or None
        if error and code == 0:
            return ExitInfo(exit_code=-1, error=error, error_reason="start_failed")
        if code == 127 and (missing := self._missing_command()):
            return ExitInfo(
                exit_code=code,
                error_reason="engine_missing",
                error=f"the image {self.image} has no {missing}: use an engine image with "
                "llamafactory-cli on its PATH (docs/docker.md), or set LLMCT_DOCKER_IMAGE",
            )
        return ExitInfo(exit_code=code, oom_killed=oom)

    def _missing_command(self) -> str | None:
        """The command init could not exec (tini says so on stderr and exits 127), if that was it."""
        try:
            tail = self.client.api.logs(self.container_id, stdout=False, stderr=True, tail=5)
        except Exception:  # noqa: BLE001
            return None
        found = re.search(rb"\[FATAL tini \(\d+\)\] exec (\S+) failed", tail)
        return found.group(1).decode(errors="replace") if found else None

    async def wait(self) -> ExitInfo:
        if self._exit is None:
            self._exit = _in_thread(self._wait_blocking, f"{self.name}-wait")
        info = await asyncio.shield(self._exit)
        # Let the log readers reach the end of the output; never hang on a stuck stream (or on a
        # caller that does not read lines() and so leaves the readers blocked on a full queue).
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._readers_finished.wait(), READERS_GRACE_S)
        self._active.discard(self.container_id)
        return info

    async def stop(self, grace_s: float) -> None:
        """SIGTERM (to the init process, which hands it to the engine), then a kill after `grace_s`."""
        seconds = max(0, math.ceil(grace_s))  # the API takes whole seconds

        def stop() -> None:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.stop(self.container_id, timeout=seconds)

        await _in_thread(stop, f"{self.name}-stop")
