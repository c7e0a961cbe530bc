"""Fixtures shared by the integration tests."""

import nats
import pytest
from litestar.testing import AsyncTestClient

from services.common import objects
from services.common.store import create_pool


@pytest.fixture(scope="module")
async def pool(settings):
    """Our own pool, for arranging state: the app's pool lives on the test client's event loop."""
    pool = await create_pool(settings.database_url)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def owners(settings):
    """The registry and datasets services in-process, answering the questions they own over the real NATS
    (which models and datasets a caller may use): what the scheduler asks before it accepts a job."""
    from services.datasets.app import create_app as datasets_app
    from services.registry.app import create_app as registry_app

    async with AsyncTestClient(app=registry_app(settings)) as registry, AsyncTestClient(app=datasets_app(settings)):
        yield registry


@pytest.fixture(scope="module")
async def bus(settings):
    """A NATS connection of the services' user, for asking owners directly."""
    nc = await nats.connect(settings.nats_url)
    yield nc
    await nc.drain()


@pytest.fixture
async def js(nats_server):
    """The services' connection, with every object bucket there (`objects` storage mode)."""
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await objects.ensure_buckets(js)
    yield js
    await nc.close()
