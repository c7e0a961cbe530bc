"""NATS side of the registry: job results in, models registered. Thin: decode, call the service, say what to do."""

from __future__ import annotations

import logging

import msgspec

from services.common import contracts
from services.common.consumers import Ack, Consumer, Delivery, Nak, Outcome
from services.common.contracts import Subjects
from services.common.lifecycle import Background, Context

from . import presets, service

log = logging.getLogger(__name__)

NOT_RECORDED_RETRY_S = 1.0
FAILED_RETRY_S = 2.0
MAX_RETRY_S = 30.0


async def on_job_event(context: Context, event: contracts.JobEvent, delivery: Delivery) -> Outcome:
    """Register what a succeeded job left; any other event is only acked."""
    if not (isinstance(event, contracts.JobFinished) and event.state == "succeeded"):
        return Ack()
    outcome = await service.register_job_output(context.pool, event.job_id)
    if outcome == "not_ready":
        # The scheduler commits the result from the same stream: look again once it has, backing off.
        return Nak(delay=min(MAX_RETRY_S, NOT_RECORDED_RETRY_S * delivery.num_delivered))
    return Ack()


async def sync_presets(context: Context) -> None:
    """Load the reference presets."""
    async with context.pool.acquire() as conn:
        await presets.sync_reference_presets(conn)


async def catch_up(context: Context) -> None:
    """Register the outputs of jobs that succeeded while no registry listened (once, at start)."""
    try:
        if count := await service.register_missed_outputs(context.pool):
            log.info("registered %d job output(s) missed while away", count)
    except Exception:
        log.exception("catching up on job outputs failed")


CONSUMERS = (
    Consumer(
        durable=contracts.REGISTRY_JOB_EVENTS_CONSUMER,
        stream="JOB_EVENTS",
        subject=Subjects.JOB_STATUS_ALL,
        decode=msgspec.json.Decoder(contracts.JobEvent).decode,
        handler=on_job_event,
        retry_s=FAILED_RETRY_S,
    ),
)

BACKGROUND = (Background(name="job outputs catch-up", run=catch_up),)
