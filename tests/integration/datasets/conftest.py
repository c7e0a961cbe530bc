"""Fixtures of the datasets service tests: one in-process app per module against the real servers."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from services.datasets.app import create_app
from services.datasets.settings import DatasetSettings
from tests.integration.datasets.helpers import Api, make_user

# Small enough to test the cap without sending gigabytes.
MAX_BYTES = 256 * 1024


@pytest.fixture(scope="module")
async def client(settings):
    async with AsyncTestClient(app=create_app(settings, DatasetSettings(max_bytes=MAX_BYTES))) as client:
        yield client


@pytest.fixture
def data_dir(settings):
    settings.storage.data.mkdir(parents=True, exist_ok=True)
    return settings.storage.data


@pytest.fixture
def anonymous(client) -> Api:
    return Api(client)


@pytest.fixture
async def alice(client, pool, settings) -> Api:
    user_id, headers = await make_user(pool, settings)
    api = Api(client, headers)
    api.user_id = user_id
    return api


@pytest.fixture
async def bob(client, pool, settings) -> Api:
    user_id, headers = await make_user(pool, settings)
    api = Api(client, headers)
    api.user_id = user_id
    return api


@pytest.fixture
async def admin(client, pool, settings) -> Api:
    user_id, headers = await make_user(pool, settings, role="admin")
    api = Api(client, headers)
    api.user_id = user_id
    return api
