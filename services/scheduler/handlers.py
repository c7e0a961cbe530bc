"""NATS side of the scheduler: thin loops that decode, call the service, commit, then ack."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from litestar import Litestar

from services.common import contracts
from services.common.bus import consume, decode_or_term
from services.common.contracts import Subjects

from .fleet import maintenance
from .jobs import events, service
from .logs.gate import Assignments, read_assignment
from .logs.relay import LogRelay

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 10.0
IDLE_PASS_S = 2.0

_job_events = msgspec.json.Decoder(contracts.JobEvent)


async def _on_submitted(app: Litestar, msg) -> None:
    app.state.wake.set()  # Postgres holds the queue; the message only says "look now"
    await msg.ack()


async def _on_job_event(app: Litestar, msg) -> None:
    event = await decode_or_term(msg, _job_events)
    if event is None:
        return
    try:
        applied = await events.record_job_event(app.state.pool, app.state.nc, event, msg.subject)
    except Exception:  # noqa: BLE001 - Postgres away: let NATS redeliver it later
        log.exception("could not record %s", type(event).__name__)
        await msg.nak(delay=2)
        return
    await msg.ack()  # a dropped event too: delivering it again would change nothing
    if applied and isinstance(event, contracts.JobFinished):
        app.state.wake.set()


async def _dispatch_forever(app: Litestar) -> None:
    wake: asyncio.Event = app.state.wake
    loop = asyncio.get_running_loop()
    next_sweep = 0.0
    while True:
        with contextlib.suppress(TimeoutError):  # asyncio.timeout, not wait_for: a cancel must not be lost
            async with asyncio.timeout(IDLE_PASS_S):
                await wake.wait()
        wake.clear()
        try:
            if loop.time() >= next_sweep:
                await service.sweep(app.state.pool, app.state.nc, app.state.settings)
                next_sweep = loop.time() + SWEEP_EVERY_S
            while await service.dispatch_pending(app.state.pool, app.state.nc, app.state.js, app.state.settings):
                pass
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the next pass retries
            log.exception("dispatch pass failed")


async def start(app: Litestar) -> None:
    """Start the dispatcher, the consumers and the log relay; on start-up the first pass re-examines every job."""
    app.state.wake = asyncio.Event()
    app.state.wake.set()

    await maintenance.start(app)  # heartbeats, offline agents, metrics retention
    relay = app.state.log_relay = LogRelay(app.state.nc, app.state.js,
                                           Assignments(lambda job_id: read_assignment(app.state.pool, job_id)))
    await relay.start()
    app.state.bus_reconnected.append(relay.reconnected)
    app.state.tasks = [
        asyncio.create_task(_dispatch_forever(app)),
        asyncio.create_task(consume(app.state.js, subject=Subjects.JOB_SUBMITTED, stream="JOBS",
                                    durable=contracts.DISPATCHER_CONSUMER, handle=lambda m: _on_submitted(app, m))),
        asyncio.create_task(consume(app.state.js, subject=Subjects.JOB_STATUS_ALL, stream="JOB_EVENTS",
                                    durable=contracts.JOB_EVENTS_CONSUMER, handle=lambda m: _on_job_event(app, m))),
    ]


async def stop(app: Litestar) -> None:
    for task in app.state.tasks:
        task.cancel()
    await asyncio.gather(*app.state.tasks, return_exceptions=True)
    await app.state.log_relay.stop()
    await maintenance.stop(app)
