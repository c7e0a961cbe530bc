"""Through the gateway to the services and Postgres, all as real processes."""

import pytest

from .helpers import unique

pytestmark = pytest.mark.e2e


async def test_register_login_me_through_gateway(gw, stack):
    name = unique("gw-user")
    r = await gw.post(
        "/api/auth/register", json={"username": name, "password": "rainy-days-77", "invite_code": stack.invite_code}
    )
    assert r.status_code == 201, r.text
    r = await gw.post("/api/auth/login", json={"username": name, "password": "rainy-days-77"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    r = await gw.get("/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert r.status_code == 200
    assert r.json()["username"] == name and r.json()["role"] == "user"
