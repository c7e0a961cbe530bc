"""`llmct jobs logs -f`: the job's log live over the logs WebSocket, its state and progress over the jobs feed
(each opened with a one-time ticket, as the web client does), until the job ends.

The logs socket stays open after a job ends (a retry writes on), so the end comes from the feed: once the job is
in a final state, lines still on their way are read until the agent's closing `job <state>` line or a quiet moment.
Both sockets reconnect by themselves (the log after the last line shown); only a refusal (not found, a credential
revoked) ends the follow early.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Protocol

import httpx
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .errors import CliError, Exit
from .http import Gateway, async_client, checked, json_of, segment, ticket_url

TERMINAL = ("succeeded", "failed", "cancelled")
QUIET_S = 3.0  # no line for this long after the end (and no closing line): nothing more is coming
DRAIN_MAX_S = 15.0
RECONNECT_S = 1.0
NOT_FOUND = 4404


class Printer(Protocol):
    def line(self, line: dict, attempt: int) -> None: ...
    def notice(self, notice: dict) -> None: ...
    def progress(self, state: str, progress: dict | None) -> None: ...


@dataclass
class Ending:
    state: str
    reason: str | None = None
    message: str | None = None


@dataclass
class Watch:
    """What the two sockets share: where the log is, when a line last came, how the job ended."""

    position: str = "0"
    last_line_at: float = field(default_factory=time.monotonic)
    closing_state: str | None = None  # the state the newest line closed its attempt with; None: not a closing line
    ended: asyncio.Future[Ending] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def end(self, ending: Ending) -> None:
        if not self.ended.done():
            self.ended.set_result(ending)


def frame_lines(frame: dict) -> list[tuple[dict, int]]:
    """A logs frame's lines, each with its attempt."""
    return [(line, int(frame.get("attempt", 1))) for line in frame.get("lines", [])]


def is_closing_line(line: dict, state: str) -> bool:
    """The agent's last line of an attempt: `job <state>[: message]` on the system stream."""
    return line.get("stream") == "system" and str(line.get("text", "")).startswith(f"job {state}")


async def read_log(http: httpx.AsyncClient, base_url: str, job_id: str, watch: Watch, printer: Printer) -> None:
    """Show the job's log from `watch.position` on, reconnecting after a drop; forever (cancelled at the end)."""
    while True:
        url = await ticket_url(http, base_url, f"/api/jobs/{segment(job_id)}/logs", {"after": watch.position})
        try:
            async with websockets.connect(url, max_size=8 * 2**20) as socket:
                async for raw in socket:
                    show_frame(json.loads(raw), watch, printer)
        except ConnectionClosed as closed:
            if closed.rcvd is not None and closed.rcvd.code == NOT_FOUND:
                raise CliError(f"HTTP 404 not_found: job {job_id} not found", Exit.REFUSED) from None
        except (TimeoutError, OSError, InvalidStatus):
            pass  # the gateway restarting, a network blip: try again
        await asyncio.sleep(RECONNECT_S)


def show_frame(frame: dict, watch: Watch, printer: Printer) -> None:
    if "notice" in frame:
        printer.notice(frame["notice"])
        return
    for line, attempt in frame_lines(frame):
        printer.line(line, attempt)
        watch.position = f"{attempt}.{line['seq']}"
        watch.last_line_at = time.monotonic()
        watch.closing_state = next((state for state in TERMINAL if is_closing_line(line, state)), None)


async def job_now(http: httpx.AsyncClient, job_id: str) -> dict:
    """The job's state, progress and message (without its progress series)."""
    answer = await http.get(f"/api/jobs/{segment(job_id)}", params={"series_after_step": 2**31 - 1, "series_points": 2})
    return json_of(checked(answer))


async def watch_state(http: httpx.AsyncClient, base_url: str, job_id: str, watch: Watch, printer: Printer) -> None:
    """Follow the job's state and progress on the jobs feed; end `watch` when the job is in a final state."""
    while True:
        url = await ticket_url(http, base_url, "/api/jobs/feed", {})
        try:
            async with websockets.connect(url) as socket:
                await sync_state(http, job_id, watch, printer)  # after subscribing: no change falls between
                async for raw in socket:
                    change = json.loads(raw)
                    if change.get("job_id") != job_id:
                        continue
                    printer.progress(change["state"], change.get("progress"))
                    if change["state"] in TERMINAL:
                        await sync_state(http, job_id, watch, printer)  # the message comes with the detail
        except (TimeoutError, ConnectionClosed, OSError, InvalidStatus, httpx.TransportError):
            pass
        await asyncio.sleep(RECONNECT_S)


async def sync_state(http: httpx.AsyncClient, job_id: str, watch: Watch, printer: Printer) -> None:
    job = await job_now(http, job_id)
    printer.progress(job["state"], job.get("progress"))
    if job["state"] in TERMINAL:
        watch.end(Ending(job["state"], job.get("reason"), job.get("message")))


async def drained(watch: Watch) -> None:
    """Return once the lines still on their way after the end have come: the closing line, or a quiet moment."""
    deadline = time.monotonic() + DRAIN_MAX_S
    state = watch.ended.result().state
    while time.monotonic() < deadline and watch.closing_state != state:
        if time.monotonic() - watch.last_line_at >= QUIET_S:
            return
        await asyncio.sleep(0.1)


async def follow(gateway: Gateway, job_id: str, printer: Printer, after: str = "0") -> Ending:
    """Show the job's log live until the job ends; how it ended."""
    async with async_client(gateway) as http:
        watch = Watch(position=after)
        await job_now(http, job_id)  # a job that is not there (or not the caller's) is refused now, plainly
        tasks = [
            asyncio.create_task(read_log(http, gateway.url, job_id, watch, printer)),
            asyncio.create_task(watch_state(http, gateway.url, job_id, watch, printer)),
        ]
        try:
            done, _ = await asyncio.wait([watch.ended, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task in done:
                    task.result()  # a refusal: raise it
            watch.last_line_at = max(watch.last_line_at, time.monotonic() - QUIET_S / 2)  # some time for a relay
            await wait_or_fail(drained(watch), tasks)
            return watch.ended.result()
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*tasks, return_exceptions=True)


async def wait_or_fail(awaitable, tasks: list[asyncio.Task]) -> None:
    """Await `awaitable`, unless one of `tasks` fails first (then raise its error)."""
    waiting = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        if task in done and not task.cancelled() and task.exception():
            waiting.cancel()
            task.result()
