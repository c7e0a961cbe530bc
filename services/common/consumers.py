"""Declared JetStream consumers: what a service consumes, beside the handler that takes it, and the one policy
that settles each message.

A handler gets the service's context, the decoded message and a `Delivery` (what it may need to know about this
delivery), and returns what to do with the message: `Ack()`, `Nak(delay)` or `Term(reason)`. It never touches
the NATS message. A handler that raises has its message redelivered after `retry_s` (an outage passes).

A message that can never be handled is never silently dropped: one that does not decode, or whose handler raises
one of the consumer's `poison` exceptions (bad data, not an outage: Postgres refusing a NUL byte), is kept as it
came in the DEAD_LETTERS stream (`deadletter.<durable>`, headers: its subject, the consumer and why), counted on
`/metrics` (`llmct_dead_letters_total`), logged, handed to the consumer's `on_dead_letter` (the scheduler fails the
job it was about) and only then terminated. While DEAD_LETTERS cannot take it, it is redelivered instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from nats.js import JetStreamContext
from prometheus_client import Counter

from .bus import consume
from .contracts import Subjects

log = logging.getLogger(__name__)

C = TypeVar("C")
M = TypeVar("M")


@dataclass(frozen=True)
class Ack:
    """Done with the message."""


@dataclass(frozen=True)
class Nak:
    """Deliver the message again, after `delay` seconds (at once when None)."""

    delay: float | None = None


@dataclass(frozen=True)
class Term:
    """Never deliver the message again; `reason` is logged."""

    reason: str


Outcome = Ack | Nak | Term


@dataclass(frozen=True)
class Delivery:
    """What a handler may know about one delivery, without the message itself."""

    subject: str
    num_delivered: int


@dataclass(frozen=True, kw_only=True)
class Consumer(Generic[C, M]):
    """A durable pull consumer of one stream, and the handler of what it takes."""

    durable: str
    stream: str
    subject: str
    decode: Callable[[bytes], M]
    """Bytes to the message the handler takes (e.g. a msgspec Decoder's `decode`); raising means undecodable."""
    handler: Callable[[C, M, Delivery], Awaitable[Outcome]]
    batch: int = 256
    ack_wait: float = 30.0
    max_ack_pending: int = 10_000
    retry_s: float = 2.0
    """How long a message whose handler raised waits before it is delivered again."""
    poison: tuple[type[Exception], ...] = ()
    """Exceptions of the handler that mean this message can never be applied: it goes to DEAD_LETTERS."""
    on_dead_letter: Callable[[C, Delivery, str], Awaitable[None]] | None = None
    """Told (context, delivery, why) when a message goes to DEAD_LETTERS, before it is terminated."""


DEAD_LETTERS = Counter("llmct_dead_letters_total", "Messages a consumer could not decode or apply", ["consumer"])
HEADER_SUBJECT, HEADER_CONSUMER, HEADER_ERROR = "Llmct-Subject", "Llmct-Consumer", "Llmct-Error"


async def settle(consumer: Consumer[C, Any], context: C, msg, js: JetStreamContext) -> None:
    """Decode one message, hand it to the consumer's handler and apply the outcome (the one ack policy)."""
    delivery = Delivery(msg.subject, _num_delivered(msg))
    try:
        message = consumer.decode(msg.data)
    except Exception as exc:  # noqa: BLE001 - msgspec.ValidationError / DecodeError: no handler can read it
        await dead_letter(consumer, context, msg, delivery, js, f"undecodable: {exc}")
        return
    try:
        outcome = await consumer.handler(context, message, delivery)
    except consumer.poison as exc:
        await dead_letter(consumer, context, msg, delivery, js, f"could not be applied: {exc}")
        return
    except Exception:
        log.exception(
            "%s: could not handle %s on %s; retrying in %.0f s",
            consumer.durable,
            type(message).__name__,
            msg.subject,
            consumer.retry_s,
        )
        await msg.nak(delay=consumer.retry_s)
        return
    await apply(outcome, msg)


async def dead_letter(
    consumer: Consumer[C, Any], context: C, msg, delivery: Delivery, js: JetStreamContext, why: str
) -> None:
    """Keep `msg` in DEAD_LETTERS, count it, tell the consumer's owner, then terminate it; while DEAD_LETTERS cannot
    take it, deliver it again later instead (never drop it)."""
    why = " ".join(why.split())[:500]  # one header line
    headers = {HEADER_SUBJECT: msg.subject, HEADER_CONSUMER: consumer.durable, HEADER_ERROR: why}
    try:
        await js.publish(Subjects.dead_letter(consumer.durable), msg.data, headers=headers, timeout=5)
    except Exception:  # NATS away: keep the message where it is (logged with its traceback)
        log.exception("%s: could not keep a bad message from %s; retrying", consumer.durable, msg.subject)
        await msg.nak(delay=consumer.retry_s)
        return
    DEAD_LETTERS.labels(consumer=consumer.durable).inc()
    log.error("%s: a message on %s went to DEAD_LETTERS: %s", consumer.durable, msg.subject, why)
    if consumer.on_dead_letter is not None:
        try:
            await consumer.on_dead_letter(context, delivery, why)
        except Exception:  # the letter is kept; the owner's follow-up is best effort (logged)
            log.exception("%s: acting on a dead letter from %s failed", consumer.durable, msg.subject)
    await msg.term()


async def apply(outcome: Outcome, msg) -> None:
    """Ack, nak or terminate `msg` as the handler decided."""
    match outcome:
        case Ack():
            await msg.ack()
        case Nak(delay=delay):
            await msg.nak(delay=delay)
        case Term(reason=reason):
            log.warning("terminating a message on %s: %s", msg.subject, reason)
            await msg.term()


def _num_delivered(msg) -> int:
    """How many times this message was delivered (1 the first time)."""
    try:
        return msg.metadata.num_delivered
    except Exception:  # noqa: BLE001 - not a JetStream message (a test's stand-in)
        return 1


async def run_consumer(js: JetStreamContext, consumer: Consumer[C, Any], context: C) -> None:
    """Consume forever (services.common.bus.consume: one message at once, then drain), settling each message."""
    await consume(
        js,
        subject=consumer.subject,
        durable=consumer.durable,
        stream=consumer.stream,
        handle=lambda msg: settle(consumer, context, msg, js),
        batch=consumer.batch,
        ack_wait=consumer.ack_wait,
        max_ack_pending=consumer.max_ack_pending,
    )
