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
from .logs import LogHub, frame_text, lines_after

NOT_FOUND = 4404


@websocket("/api/ws/echo")
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


async def owns_job(pool: Pool, principal: Principal, job_id: str) -> bool:
    """Whether the caller may watch the job (its owner, or an admin). Read-only on the scheduler's table."""
    owner = await readmodels.job_owner(pool, job_id)
    return owner is not None and (principal.is_admin or owner == principal.user_id)


async def stream_logs(socket: WebSocket, hub: LogHub, job_id: str, after: int) -> None:
    """Replay from the line after `after`, then follow live; a viewer that falls behind is closed."""
    viewer = await hub.attach(job_id)  # live lines buffer while the replay runs
    try:
        async for batch in hub.replay(job_id):
            if lines := lines_after(batch, after):
                await socket.send_data(frame_text(job_id, lines), mode="text")
                after = lines[-1]["seq"]
        while True:
            get = asyncio.ensure_future(viewer.queue.get())
            dropped = asyncio.ensure_future(viewer.dropped.wait())
            done, _ = await asyncio.wait({get, dropped}, return_when=asyncio.FIRST_COMPLETED)
            if dropped in done:
                get.cancel()
                await socket.close(code=4408, reason="too slow: reconnect with ?after=<last seq>")
                return
            dropped.cancel()
            frame = get.result()
            if frame.batch.lines and frame.batch.lines[0].seq > after:  # the usual case: all new, send as encoded
                await socket.send_data(frame.text, mode="text")
                after = frame.batch.lines[-1].seq
            elif lines := lines_after(frame.batch, after):  # overlaps the replay: only the unseen lines
                await socket.send_data(frame_text(job_id, lines), mode="text")
                after = lines[-1]["seq"]
    finally:
        await hub.detach(job_id, viewer)


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


@websocket("/api/jobs/{rest:path}")
@capped_per_user
async def job_sockets(
    socket: WebSocket, pool: Pool, nc: Client, log_hub: LogHub, principal: Principal, rest: str
) -> None:
    """`/api/jobs/feed` and `/api/jobs/{id}/logs?after=<seq>`; another user's job is a 404 (close 4404)."""
    parts = rest.strip("/").split("/")
    await socket.accept()
    try:
        if parts == ["feed"]:
            await until_disconnect(socket, stream_feed(socket, nc, principal))
        elif len(parts) == 2 and parts[1] == "logs" and await owns_job(pool, principal, parts[0]):
            after = socket.query_params.get("after", "0")
            await until_disconnect(socket, stream_logs(socket, log_hub, parts[0], int(after) if after.isdigit() else 0))
        else:
            await socket.close(code=NOT_FOUND, reason="not found")
    except WebSocketDisconnect:
        return
