"""Access tokens: expired, forged, tampered and logged-out tokens are refused, here and in other services."""

import asyncio
import base64
import json

import pytest
from litestar.testing import AsyncTestClient

from services.auth.app import create_app
from services.common.security import issue_token
from tests.integration.auth.helpers import assert_error, bearer

pytestmark = pytest.mark.integration


async def _me(api, headers: dict):
    return await api.client.get("/api/auth/me", headers=headers)


async def _user_claims(api) -> tuple[str, dict]:
    username, headers = await api.new_user()
    return username, (await _me(api, headers)).json()


async def test_me_answers_who_the_caller_is(api):
    username, me = await _user_claims(api)
    assert me["username"] == username and me["role"] == "user"


async def test_no_header_is_401_with_challenge(api):
    r = await api.client.get("/api/auth/me")
    assert_error(r, 401, "unauthorized", None)
    assert r.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer garbage",
        "Bearer a.b.c",
        "Bearer llmct_not-a-key",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "garbage",
    ],
)
async def test_garbage_credentials_are_401(api, authorization):
    r = await api.client.get("/api/auth/me", headers={"Authorization": authorization})
    assert_error(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"] == "Bearer"


async def test_expired_token_is_401(api):
    username, me = await _user_claims(api)
    token, _, _ = issue_token(api.settings.secret_key, user_id=me["id"], username=username, role="user", ttl_s=-10)
    r = await _me(api, bearer(token))
    assert "expired" in assert_error(r, 401, "unauthorized")["message"]


async def test_token_signed_with_another_secret_is_401(api):
    username, me = await _user_claims(api)
    token, _, _ = issue_token(
        "another-secret-" + "x" * 32, user_id=me["id"], username=username, role="admin", ttl_s=600
    )
    assert_error(await _me(api, bearer(token)), 401, "unauthorized")
    assert_error(await api.client.get("/api/auth/users", headers=bearer(token)), 401, "unauthorized")


def _with_claims(token: str, **changes) -> str:
    """The same signature over a payload someone edited."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    edited = base64.urlsafe_b64encode(json.dumps({**claims, **changes}).encode()).rstrip(b"=").decode()
    return f"{header}.{edited}.{signature}"


async def test_tampered_token_is_401(api):
    username, headers = await api.new_user()
    token = headers["Authorization"].removeprefix("Bearer ")
    assert_error(
        await api.client.get("/api/auth/users", headers=bearer(_with_claims(token, role="admin"))), 401, "unauthorized"
    )
    assert_error(await _me(api, bearer(_with_claims(token, exp=4_000_000_000))), 401, "unauthorized")
    assert_error(await _me(api, bearer(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))), 401, "unauthorized")


async def test_logout_revokes_only_that_token(api):
    username, headers = await api.new_user()
    other = bearer(await api.token(username))
    r = await api.client.post("/api/auth/logout", headers=headers)
    assert r.status_code == 204, r.text
    assert_error(await _me(api, headers), 401, "unauthorized")
    assert_error(await api.client.post("/api/auth/logout", headers=headers), 401, "unauthorized")
    assert (await _me(api, other)).status_code == 200


async def test_logout_with_an_api_key_is_400(api):
    _, headers = await api.new_user()
    key = (await api.client.post("/api/auth/api-keys", json={"name": "ci"}, headers=headers)).json()["key"]
    assert_error(await api.client.post("/api/auth/logout", headers=bearer(key)), 400, "not_a_session")
    assert (await _me(api, bearer(key))).status_code == 200


async def test_logout_is_stored_for_services_that_start_later(api, settings):
    _, headers = await api.new_user()
    assert (await api.client.post("/api/auth/logout", headers=headers)).status_code == 204
    async with AsyncTestClient(app=create_app(settings)) as later:
        assert_error(await later.get("/api/auth/me", headers=headers), 401, "unauthorized")


async def test_logout_reaches_running_services_over_nats(api, settings):
    _, headers = await api.new_user()
    async with AsyncTestClient(app=create_app(settings)) as elsewhere:
        assert (await elsewhere.get("/api/auth/me", headers=headers)).status_code == 200
        assert (await api.client.post("/api/auth/logout", headers=headers)).status_code == 204
        for _ in range(50):
            if (await elsewhere.get("/api/auth/me", headers=headers)).status_code == 401:
                break
            await asyncio.sleep(0.1)
        assert_error(await elsewhere.get("/api/auth/me", headers=headers), 401, "unauthorized")
