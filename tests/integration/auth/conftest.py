"""Fixtures of the auth service tests: one in-process app per module against the real servers."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from services.auth.app import create_app
from tests.integration.auth.helpers import Api, from_peer


@pytest.fixture(scope="module")
async def client(settings):
    # Called from loopback, as the gateway calls auth: a trusted proxy, so the X-Forwarded-For the tests send counts.
    async with AsyncTestClient(app=from_peer(create_app(settings), "127.0.0.1")) as client:
        yield client


@pytest.fixture
def api(client, settings) -> Api:
    return Api(client, settings)
