"""Fixtures of the registry tests: the registry app in-process against the real servers."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from services.common.store import create_pool
from services.registry.app import create_app


@pytest.fixture(scope="module")
async def client(settings):
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
async def pool(settings):
    """Our own pool, for arranging state: the app's pool lives on the test client's event loop."""
    pool = await create_pool(settings.database_url)
    yield pool
    await pool.close()
