"""Fixtures shared by the integration tests."""

import pytest

from services.common.store import create_pool


@pytest.fixture(scope="module")
async def pool(settings):
    """Our own pool, for arranging state: the app's pool lives on the test client's event loop."""
    pool = await create_pool(settings.database_url)
    yield pool
    await pool.close()
