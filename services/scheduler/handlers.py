"""NATS side of the scheduler: thin handlers that decode, call the service and say what to do with the message; the
dispatcher loop; and what the scheduler declares to its lifespan (consumers and background parts)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
import msgspec

from services.common import contracts
from services.common.consumers import Ack, Consumer, Delivery, Outcome
from services.common.contracts import Subjects
from services.common.lifecycle import Background

from .context import SchedulerContext
from .fleet import maintenance
from .jobs import events, idempotency, service
from .openai import results
from .webhooks import delivery as webhook_delivery

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 10.0
IDLE_PASS_S = 2.0
EVENT_RETRY_S = 2.0  # Postgres away: NATS redelivers the event after this


async def on_submitted(context: SchedulerContext, message: bytes, delivery: Delivery) -> Outcome:
    """A job was submitted: Postgres holds the queue, the message only says "look now"."""
    context.wake.set()
    return Ack()


async def on_job_event(context: SchedulerContext, event: contracts.JobEvent, delivery: Delivery) -> Outcome:
    """Record an agent's job event; a dropped event is acked too: delivering it again would change nothing."""
    applied = await events.record_job_event(context.pool, context.nc, event, delivery.subject)
    if applied and isinstance(event, contracts.JobFinished):
        context.wake.set()
        if event.state == "succeeded":  # a fine-tuning job's results file (made again on a read, should this fail)
            results.on_success(context.pool, context.nc, event.job_id)
    return Ack()


async def on_bad_job_event(context: SchedulerContext, delivery: Delivery, why: str) -> None:
    """An agent's event went to DEAD_LETTERS: fail its job rather than leave it running for ever."""
    if await events.fail_for_bad_event(context.pool, context.nc, delivery.subject, why):
        context.wake.set()  # its GPUs are free for the queue


async def dispatch_forever(context: SchedulerContext) -> None:
    """Place pending jobs whenever woken (or every IDLE_PASS_S), repairing stale ones (and forgetting expired
    idempotency keys) every SWEEP_EVERY_S."""
    wake, settings = context.wake, context.scheduler_settings
    loop = asyncio.get_running_loop()
    next_sweep = 0.0
    while True:
        with contextlib.suppress(TimeoutError):  # asyncio.timeout, not wait_for: a cancel must not be lost
            async with asyncio.timeout(IDLE_PASS_S):
                await wake.wait()
        wake.clear()
        try:
            if loop.time() >= next_sweep:
                await service.sweep(context.pool, context.nc, settings)
                await idempotency.expire(context.pool)
                next_sweep = loop.time() + SWEEP_EVERY_S
            while await service.dispatch_pending(context.pool, context.nc, context.js, settings):
                pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("dispatch pass failed")


async def start_relay(context: SchedulerContext) -> None:
    """Relay agents' log batches (services/scheduler/logs/relay.py owns its own ordered consumer)."""
    await context.relay.start()
    context.reconnected.append(context.relay.reconnected)


async def stop_relay(context: SchedulerContext) -> None:
    """Stop relaying; what was not acked is redelivered to the next relay."""
    await context.relay.stop()


CONSUMERS = (
    Consumer(
        durable=contracts.DISPATCHER_CONSUMER,
        stream="JOBS",
        subject=Subjects.JOB_SUBMITTED,
        decode=bytes,
        handler=on_submitted,
    ),
    Consumer(
        durable=contracts.JOB_EVENTS_CONSUMER,
        stream="JOB_EVENTS",
        subject=Subjects.JOB_STATUS_ALL,
        decode=msgspec.json.Decoder(contracts.JobEvent).decode,
        handler=on_job_event,
        retry_s=EVENT_RETRY_S,
        poison=(asyncpg.DataError,),  # Postgres refuses what the event carries: retrying changes nothing
        on_dead_letter=on_bad_job_event,
    ),
)

BACKGROUND = (
    *maintenance.BACKGROUND,  # heartbeats, offline agents, metrics retention
    Background(name="log relay", start=start_relay, stop=stop_relay),
    Background(name="dispatcher", run=dispatch_forever),
    *webhook_delivery.BACKGROUND,  # the outbox's sender: its own loop and HTTP client, bounded
)
