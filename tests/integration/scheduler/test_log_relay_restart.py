"""The log relay loses nothing and repeats nothing when it dies holding batches, when none runs for a while, and when
two run at once (scheduler replicas): relays built here directly on the one durable consumer (no scheduler app in
this module, so no other relay takes the batches), against real NATS and Postgres."""

from __future__ import annotations

import asyncio

import pytest

from services.agent.logs import LogShipper
from services.common.bus import close_bus, connect_bus, ensure_streams
from services.scheduler.logs.gate import Assignments, read_assignment
from services.scheduler.logs.relay import LogRelay
from tests.helpers import eventually

from .helpers import job_on, ship, stored_lines, until_relayed

pytestmark = pytest.mark.integration

AGENT = "relay-agent"


@pytest.fixture
async def bus(nats_server):
    nc = await connect_bus(nats_server.url, "log-relay-test")
    js = nc.jetstream()
    await ensure_streams(js)
    yield nc, js
    await close_bus(nc)


@pytest.fixture
async def relays(bus, pool):
    """start(js=None): a relay as a scheduler runs it, on the test's connection (or `js` in its place)."""
    started: list[LogRelay] = []

    async def start(js=None) -> LogRelay:
        nc, bus_js = bus
        relay = LogRelay(nc, js or bus_js, Assignments(lambda job_id: read_assignment(pool, job_id)))
        await relay.start()
        started.append(relay)
        return relay

    yield start
    for relay in started:
        await relay.stop()


class StuckLogs:
    """JetStream for a relay whose publishes to LOGS never return: it takes batches and holds them, unacked, as a
    relay that is about to die does."""

    def __init__(self, js):
        self._js = js
        self.tried = asyncio.Event()

    async def publish(self, *args, **kwargs):
        self.tried.set()
        await asyncio.Event().wait()

    def __getattr__(self, name):
        return getattr(self._js, name)


def numbered(first: int, last: int) -> list[str]:
    return [f"line {i}" for i in range(first, last + 1)]


async def test_a_relay_that_dies_holding_batches_loses_none_repeats_none_and_keeps_their_order(
    bus, relays, pool, people, tmp_path
):
    _, js = bus
    job_id = await job_on(pool, people["fleet-owner"][0], tmp_path, AGENT, attempt=1)
    log_path = tmp_path / "job.log"
    try:
        stuck = StuckLogs(js)
        dying = await relays(stuck)
        await ship(js, AGENT, job_id, 1, numbered(1, 1500), log_path)  # three batches of 500

        async def all_held():
            info = await js.consumer_info("LOG_INGEST", "scheduler-log-relay")
            return stuck.tried.is_set() and info.num_pending == 0 and info.num_ack_pending >= 3

        await eventually(all_held)
        await dying.stop()  # gone with three batches unacked
        await ship(js, AGENT, job_id, 1, numbered(1501, 2000), log_path, seq=1500)  # while no relay runs

        started = asyncio.get_running_loop().time()
        after = await relays()  # gets lines 1501-2000 first, and 1-1500 only after JetStream's ack wait
        await until_relayed(js)
        took = asyncio.get_running_loop().time() - started

        assert await stored_lines(js, job_id) == [(1, i, f"line {i}") for i in range(1, 2001)]
        assert after.counts["relayed"] == 4 and after.counts["gaps"] == after.counts["duplicates"] == 0
        assert took < 15, took
    finally:
        await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE id = $1", job_id)


async def test_two_relays_at_once_keep_every_jobs_lines_in_order(bus, relays, pool, people, tmp_path):
    _, js = bus
    jobs = [await job_on(pool, people["fleet-owner"][0], tmp_path, AGENT, attempt=1) for _ in range(3)]
    first, second = await relays(), await relays()

    async def ship_slowly(job_id: str) -> None:
        """Ten lines every 20 ms: a batch every 0.1 s, as a chatty job's are."""
        shipper = LogShipper(js, job_id, tmp_path / f"{job_id}.log", agent_id=AGENT, attempt=1)
        for i in range(1, 1201):
            shipper.add("stdout", f"line {i}")
            if i % 10 == 0:
                await asyncio.sleep(0.02)
        await shipper.close()

    try:
        await asyncio.gather(*(ship_slowly(job_id) for job_id in jobs))
        await until_relayed(js)
        for job_id in jobs:
            assert await stored_lines(js, job_id) == [(1, i, f"line {i}") for i in range(1, 1201)], job_id
        assert first.counts["relayed"] and second.counts["relayed"], "both relays took part"
        assert first.counts["gaps"] == second.counts["gaps"] == 0
    finally:
        await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE id = ANY($1::text[])", jobs)
