"""Fixtures of the auth service tests: one in-process app per module against the real servers."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from services.auth.app import create_app
from tests.integration.auth.helpers import Api


@pytest.fixture(scope="module")
async def client(settings):
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


@pytest.fixture
def api(client, settings) -> Api:
    return Api(client, settings)
