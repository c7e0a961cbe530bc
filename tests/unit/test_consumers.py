"""The one ack policy of declared consumers: a handler returns what to do, the loop does it."""

from datetime import UTC, datetime
from types import SimpleNamespace

import msgspec
import pytest

from services.common import contracts
from services.common.consumers import Ack, Consumer, Delivery, Nak, Term, settle

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


def consumer(handler) -> Consumer:
    return Consumer(
        durable="test",
        stream="JOB_EVENTS",
        subject="job.status.>",
        handler=handler,
        retry_s=2.0,
        decode=msgspec.json.Decoder(contracts.JobEvent).decode,
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
        await settle(consumer(handler), "ctx", msg)
        done += msg.done
    assert done == ["ack", ("nak", 3.0), "term"]
    assert seen[1] == ("ctx", "JobStarted", Delivery("job.status.gpu-1.job_1", 2))


async def test_an_undecodable_message_is_terminated_and_a_failing_handler_retried_later():
    async def fails(context, event, delivery):
        raise RuntimeError("Postgres away")

    bad, failing = FakeMsg(b"not json"), FakeMsg(EVENT)
    await settle(consumer(fails), None, bad)
    await settle(consumer(fails), None, failing)
    assert bad.done == ["term"] and failing.done == [("nak", 2.0)]
