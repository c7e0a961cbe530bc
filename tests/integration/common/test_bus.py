"""Streams against a real nats-server: created idempotently, updated when their definition moves."""

import dataclasses

import nats
import pytest

from services.common.bus import ensure_streams
from services.common.contracts import STREAMS

pytestmark = pytest.mark.integration


async def test_streams_created_and_idempotent(nats_server, monkeypatch):
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        await ensure_streams(js)
        await ensure_streams(js)  # a second start changes nothing and does not fail
        for config in STREAMS:
            info = await js.stream_info(config.name)
            assert info.config.subjects == config.subjects
            assert info.config.retention == config.retention
        changed = tuple(dataclasses.replace(c, max_age=3600.0) if c.name == "LOGS" else c for c in STREAMS)
        monkeypatch.setattr("services.common.bus.STREAMS", changed)
        await ensure_streams(js)
        assert (await js.stream_info("LOGS")).config.max_age == 3600.0
    finally:
        await nc.close()


async def test_job_queue_dedups_on_job_id(nats_server):
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        await ensure_streams(js)
        first = await js.publish("job.submitted", b"{}", headers={"Nats-Msg-Id": "job_dedup_1"})
        again = await js.publish("job.submitted", b"{}", headers={"Nats-Msg-Id": "job_dedup_1"})
        assert again.duplicate and again.seq == first.seq
    finally:
        await js.purge_stream("JOBS")
        await nc.close()
