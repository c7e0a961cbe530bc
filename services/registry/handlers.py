"""NATS side of the registry: job results in, models registered. Thin: decode, call the service, ack."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from litestar import Litestar

from services.common import contracts
from services.common.bus import consume, decode_or_term
from services.common.contracts import Subjects

from . import presets, service

log = logging.getLogger(__name__)

NOT_RECORDED_RETRY_S = 1.0
FAILED_RETRY_S = 2.0
MAX_RETRY_S = 30.0

_job_events = msgspec.json.Decoder(contracts.JobEvent)


async def _on_job_event(app: Litestar, msg) -> None:
    event = await decode_or_term(msg, _job_events)
    if event is None:
        return
    if not (isinstance(event, contracts.JobFinished) and event.state == "succeeded"):
        await msg.ack()
        return
    try:
        outcome = await service.register_job_output(app.state.pool, event.job_id)
    except Exception:  # noqa: BLE001 - Postgres away: let NATS redeliver it later
        log.exception("could not register the output of job %s", event.job_id)
        await msg.nak(delay=FAILED_RETRY_S)
        return
    if outcome == "not_ready":
        # The scheduler commits the result from the same stream: look again once it has, backing off.
        await msg.nak(delay=min(MAX_RETRY_S, NOT_RECORDED_RETRY_S * msg.metadata.num_delivered))
        return
    await msg.ack()


async def _catch_up(app: Litestar) -> None:
    try:
        if count := await service.register_missed_outputs(app.state.pool):
            log.info("registered %d job output(s) missed while away", count)
    except Exception:  # noqa: BLE001 - the consumer still covers new results
        log.exception("catching up on job outputs failed")


async def start(app: Litestar) -> None:
    """Load the reference presets, then follow job results (and register any that were missed)."""
    async with app.state.pool.acquire() as conn:
        await presets.sync_reference_presets(conn)
    app.state.tasks = [
        asyncio.create_task(consume(app.state.js, subject=Subjects.JOB_STATUS_ALL, stream="JOB_EVENTS",
                                    durable=contracts.REGISTRY_JOB_EVENTS_CONSUMER,
                                    handle=lambda m: _on_job_event(app, m))),
        asyncio.create_task(_catch_up(app)),
    ]


async def stop(app: Litestar) -> None:
    for task in app.state.tasks:
        task.cancel()
    await asyncio.gather(*app.state.tasks, return_exceptions=True)
