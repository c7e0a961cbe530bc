"""Declared JetStream consumers: what a service consumes, beside the handler that takes it, and the one policy
that settles each message.

A handler gets the service's context, the decoded message and a `Delivery` (what it may need to know about this
delivery), and returns what to do with the message: `Ack()`, `Nak(delay)` or `Term(reason)`. It never touches
the NATS message. A message that does not decode is terminated (never retried); a handler that raises has its
message redelivered after `retry_s`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from nats.js import JetStreamContext

from .bus import consume

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


async def settle(consumer: Consumer[C, Any], context: C, msg) -> None:
    """Decode one message, hand it to the consumer's handler and apply the outcome (the one ack policy)."""
    try:
        message = consumer.decode(msg.data)
    except Exception:  # noqa: BLE001 - msgspec.ValidationError / DecodeError: no handler can read it
        log.warning("dropping undecodable message on %s", msg.subject)
        await msg.term()
        return
    try:
        outcome = await consumer.handler(context, message, Delivery(msg.subject, _num_delivered(msg)))
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
        handle=lambda msg: settle(consumer, context, msg),
        batch=consumer.batch,
        ack_wait=consumer.ack_wait,
        max_ack_pending=consumer.max_ack_pending,
    )
