"""Fixtures of the registry tests: the registry app in-process against the real servers."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from services.registry.app import create_app


@pytest.fixture(scope="module")
async def client(settings):
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client
