"""The one ack policy of declared consumers: a handler returns what to do, the loop does it."""

from datetime import UTC, datetime
from types import SimpleNamespace

import msgspec
import pytest
from prometheus_client import REGISTRY

from services.common import contracts
from services.common.consumers import (
    HEADER_ERROR,
    HEADER_SUBJECT,
    Ack,
    Consumer,
    Delivery,
    Nak,
    Term,
    settle,
)

pytestmark = pytest.mark.unit


class FakeMsg:
    """A JetStream message as the loop sees it: data, subject, metadata, and what was done with it."""

    def __init__(self, data: bytes, delivered: int = 1):
        self.data, self.subject = data, "job.status.gpu-1.job_1"
        self.metadata = SimpleNamespace(num_delivered=delivered)
        self.done: list = []

    async def ack(self):
        self.done.append("ack")

    async def nak(self, delay=None):
        self.done.append(("nak", delay))

    async def term(self):
        self.done.append("term")


class FakeJs:
    """Where a dead letter is published (or, when `down`, where publishing fails as with NATS away)."""

    def __init__(self, down: bool = False):
        self.down = down
        self.published: list = []

    async def publish(self, subject, data, headers=None, timeout=None):
        if self.down:
            raise TimeoutError("nats: timeout")
        self.published.append((subject, data, headers))


def dead_letters_counted() -> float:
    """What /metrics shows as llmct_dead_letters_total for the test consumer."""
    return REGISTRY.get_sample_value("llmct_dead_letters_total", {"consumer": "test"}) or 0.0


class Poison(Exception):
    """Bad data the handler can never apply."""


def consumer(handler, on_dead_letter=None) -> Consumer:
    return Consumer(
        durable="test",
        stream="JOB_EVENTS",
        subject="job.status.>",
        handler=handler,
        retry_s=2.0,
        decode=msgspec.json.Decoder(contracts.JobEvent).decode,
        poison=(Poison,),
        on_dead_letter=on_dead_letter,
    )


EVENT = contracts.encode(
    contracts.JobStarted(
        job_id="job_1", agent_id="gpu-1", runtime="process", attempt=1, at=datetime(2026, 1, 1, tzinfo=UTC)
    )
)


async def test_the_handlers_outcome_is_applied_and_it_sees_the_delivery():
    seen = []

    async def handler(context, event, delivery: Delivery):
        seen.append((context, type(event).__name__, delivery))
        return {1: Ack(), 2: Nak(3.0)}.get(delivery.num_delivered, Term("enough"))

    done = []
    for delivered in (1, 2, 3):
        msg = FakeMsg(EVENT, delivered)
        await settle(consumer(handler), "ctx", msg, FakeJs())
        done += msg.done
    assert done == ["ack", ("nak", 3.0), "term"]
    assert seen[1] == ("ctx", "JobStarted", Delivery("job.status.gpu-1.job_1", 2))


async def test_a_message_that_can_never_be_handled_is_kept_counted_told_and_then_terminated():
    told = []

    async def on_dead_letter(context, delivery, why):
        told.append((context, delivery.subject, why))

    async def poisoned(context, event, delivery):
        raise Poison("invalid byte sequence for encoding UTF8: 0x00")

    js, before = FakeJs(), dead_letters_counted()
    undecodable, refused = FakeMsg(b'{"type": "job_finished", "metrics": {"loss": null}}'), FakeMsg(EVENT)
    await settle(consumer(poisoned, on_dead_letter), "ctx", undecodable, js)
    await settle(consumer(poisoned, on_dead_letter), "ctx", refused, js)
    assert undecodable.done == ["term"] and refused.done == ["term"]
    assert [(subject, data) for subject, data, _ in js.published] == [
        ("deadletter.test", undecodable.data),
        ("deadletter.test", EVENT),
    ], "kept as they came"
    assert js.published[0][2][HEADER_SUBJECT] == "job.status.gpu-1.job_1"
    assert js.published[0][2][HEADER_ERROR].startswith("undecodable:")
    assert js.published[1][2][HEADER_ERROR] == "could not be applied: invalid byte sequence for encoding UTF8: 0x00"
    assert [why.split(":")[0] for _, _, why in told] == ["undecodable", "could not be applied"]
    assert dead_letters_counted() == before + 2


async def test_a_failing_handler_is_retried_later_and_nothing_is_dropped_while_dead_letters_are_away():
    async def fails(context, event, delivery):
        raise RuntimeError("Postgres away")

    failing, undecodable = FakeMsg(EVENT), FakeMsg(b"not json")
    await settle(consumer(fails), None, failing, FakeJs())
    await settle(consumer(fails), None, undecodable, FakeJs(down=True))
    assert failing.done == [("nak", 2.0)] and undecodable.done == [("nak", 2.0)]
