"""Fixtures of the agent's objects-mode tests: the buckets on the session's NATS, and a cache."""

from __future__ import annotations

import nats
import pytest

from services.agent.cache import Cache
from services.common.bus import ensure_streams


@pytest.fixture
def make_cache(js, tmp_path):
    """A cache in the test's folder (the storage base beside it: tmp_path / "base"), `max_bytes` large."""

    def make(max_bytes: int = 1024**3) -> Cache:
        return Cache(js, tmp_path / "base" / "cache", max_bytes, progress_every_s=0)

    return make


@pytest.fixture
async def bus(nats_server):
    """A connection of the services' user with the streams there: (nc, js), for dispatching and watching jobs."""
    nc = await nats.connect(nats_server.url)
    await ensure_streams(nc.jetstream())
    yield nc, nc.jetstream()
    await nc.close()
