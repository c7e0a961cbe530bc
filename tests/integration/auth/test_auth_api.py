"""The auth service in-process against real NATS and Postgres."""

import pytest
from litestar.testing import AsyncTestClient

from services.auth.app import create_app
from tests.integration.auth.helpers import Api, unique

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def client(settings):
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


async def test_register_login_me(client, settings):
    api, name = Api(client, settings), unique("alice")  # a user and an address (login limits) of this test's own
    r = await client.post(
        "/api/auth/register", json={"username": name, "password": "correct-horse-9", "invite_code": "test-invite"}
    )
    assert r.status_code == 201, r.text
    r = await api.login(name, "correct-horse-9")
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    r = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["username"] == name
