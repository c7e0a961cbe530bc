"""WebSockets the gateway hosts itself: echo, job logs, and the caller's live job feed."""

from __future__ import annotations

import asyncio
import contextlib

from asyncpg import Pool
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from nats.aio.client import Client

from services.common import contracts, readmodels
from services.common.contracts import Subjects
from services.common.security import Principal

from .limits import capped_per_user
from .logs import LogHub, Position, follows, frame_text, lines_after, notice_text, parse_position, position_of
from .tickets import require_socket_caller

NOT_FOUND = 4404
BAD_REQUEST = 4400
AGENT_LOST = 4410  # the job's agent lost it (went offline, or restarted without it): told in a notice frame first
LOST_REASONS = frozenset({"agent_lost", "lost_on_agent", "requeued"})  # changes that end a log's live attempt
# The shared guard knows no tickets: these sockets skip it ("public") and have the gateway's own, which takes a
# one-time `?ticket=` or the Authorization header and refuses a credential in the URL (tickets.py).
SOCKET_OPT = {"public": True}


@websocket("/api/ws/echo", opt=SOCKET_OPT, guards=[require_socket_caller])
@capped_per_user
async def echo(socket: WebSocket, principal: Principal) -> None:
    """Echo every text frame back, tagged with the caller: proves WebSocket auth end to end."""
    await socket.accept()
    try:
        while True:
            text = await socket.receive_text()
            await socket.send_json({"echo": text, "user": principal.username})
    except WebSocketDisconnect:
        return


async def job_owner(pool: Pool, principal: Principal, job_id: str) -> str | None:
    """The job's owner when the caller may watch the job (its owner, or an admin), else None. Read-only on the
    scheduler's table."""
    owner = await readmodels.job_owner(pool, job_id)
    return owner if owner is not None and (principal.is_admin or owner == principal.user_id) else None


async def stream_logs(socket: WebSocket, hub: LogHub, nc: Client, owner_id: str, job_id: str, after: Position) -> None:
    """Replay from the line after `after`, then follow live; a viewer that falls behind is closed, and so is one
    whose job its agent lost (after a notice that says so: no socket stays open and silent)."""
    lost: asyncio.Queue[contracts.JobChanged] = asyncio.Queue(maxsize=1)

    async def on_change(msg) -> None:
        change = contracts.decode(msg.data)
        if isinstance(change, contracts.JobChanged) and change.reason in LOST_REASONS:
            with contextlib.suppress(asyncio.QueueFull):
                lost.put_nowait(change)

    changes = await nc.subscribe(Subjects.job_changed(owner_id, job_id), cb=on_change)
    viewer = await hub.attach(job_id)  # live lines buffer while the replay runs

    async def send_after(batch: contracts.LogBatch) -> None:
        nonlocal after
        if lines := lines_after(batch, after):
            await socket.send_data(frame_text(job_id, batch.attempt, lines), mode="text")
            after = position_of(batch)

    async def catch_up() -> None:
        """What LOGS holds after the viewer's position: the start, or what the live path missed."""
        async for batch in hub.replay(job_id):
            await send_after(batch)

    try:
        await catch_up()
        while True:
            get = asyncio.ensure_future(viewer.queue.get())
            dropped = asyncio.ensure_future(viewer.dropped.wait())
            ended = asyncio.ensure_future(lost.get())
            behind = asyncio.ensure_future(viewer.behind.wait())
            waiters = {get, dropped, ended, behind}
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiting in waiters - done:
                waiting.cancel()
            if dropped in done:
                await socket.close(code=4408, reason="too slow: reconnect with ?after=<attempt>.<seq>")
                return
            if ended in done:
                change = ended.result()
                await socket.send_data(notice_text(job_id, change.state, change.reason, change.message), mode="text")
                await socket.close(code=AGENT_LOST, reason="the job's agent lost it")
                return
            if behind in done:  # this gateway's NATS connection broke and came back: read what it missed
                viewer.behind.clear()
                await catch_up()
            if get not in done:
                continue
            frame = get.result()
            batch = frame.batch
            if not follows(batch, after) and (batch.attempt, batch.lines[0].seq) > after:
                await catch_up()  # a gap before it (missed live while NATS moved): LOGS has it, in order
            if batch.lines and (batch.attempt, batch.lines[0].seq) > after:  # the usual case: all new, as encoded
                await socket.send_data(frame.text, mode="text")
                after = position_of(batch)
            else:  # overlaps what was sent: only the unseen lines
                await send_after(batch)
    finally:
        await hub.detach(job_id, viewer)
        with contextlib.suppress(Exception):
            await changes.unsubscribe()


async def stream_feed(socket: WebSocket, nc: Client, principal: Principal) -> None:
    """Every committed state change of the caller's jobs."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=1000)

    async def on_change(msg) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(contracts.decode(msg.data))

    sub = await nc.subscribe(Subjects.job_changes_of(principal.user_id), cb=on_change)
    try:
        while True:
            change = await queue.get()
            frame = {"job_id": change.job_id, "state": change.state, "at": change.at.isoformat()}
            if change.progress is not None:
                frame["progress"] = change.progress
            if change.reason is not None:
                frame["reason"] = change.reason
            await socket.send_json(frame)
    finally:
        await sub.unsubscribe()


async def until_disconnect(socket: WebSocket, work) -> None:
    """Run `work` until it ends or the client goes away, whichever comes first."""

    async def drain_client() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await socket.receive_data(mode="text")

    tasks = [asyncio.ensure_future(work), asyncio.ensure_future(drain_client())]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() and not isinstance(task.exception(), WebSocketDisconnect):
            raise task.exception()


@websocket("/api/jobs/{rest:path}", opt=SOCKET_OPT, guards=[require_socket_caller])
@capped_per_user
async def job_sockets(
    socket: WebSocket, pool: Pool, nc: Client, log_hub: LogHub, principal: Principal, rest: str
) -> None:
    """`/api/jobs/feed` and `/api/jobs/{id}/logs?after=<attempt>.<seq>`; another user's job is a 404 (close 4404)."""
    parts = rest.strip("/").split("/")
    await socket.accept()
    try:
        if parts == ["feed"]:
            await until_disconnect(socket, stream_feed(socket, nc, principal))
        elif len(parts) == 2 and parts[1] == "logs" and (owner := await job_owner(pool, principal, parts[0])):
            after = parse_position(socket.query_params.get("after"))
            if after is None:
                await socket.close(code=BAD_REQUEST, reason="after: <attempt>.<line> (both whole numbers), or <line>")
                return
            await until_disconnect(socket, stream_logs(socket, log_hub, nc, owner, parts[0], after))
        else:
            await socket.close(code=NOT_FOUND, reason="not found")
    except WebSocketDisconnect:
        return
