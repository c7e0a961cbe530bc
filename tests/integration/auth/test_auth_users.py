"""Admins manage accounts: disable, change role, reset a password, end every session and key, at once."""

import asyncio

import pytest
from litestar.testing import AsyncTestClient

from services.auth.app import create_app
from services.common import contracts
from services.common.bus import close_bus, connect_bus
from tests.integration.auth.helpers import PASSWORD, assert_error, bearer

pytestmark = pytest.mark.integration

NEW_PASSWORD = "brand-new-pass-42"


async def _user(api) -> tuple[str, str, dict, str]:
    """A user with a session and an API key: (username, id, token headers, key)."""
    username, headers = await api.new_user()
    user_id = (await api.client.get("/api/auth/me", headers=headers)).json()["id"]
    key = (await api.client.post("/api/auth/api-keys", json={"name": "k"}, headers=headers)).json()["key"]
    return username, user_id, headers, key


async def _ok(api, headers: dict) -> int:
    return (await api.client.get("/api/auth/me", headers=headers)).status_code


async def test_disabling_ends_sessions_keys_and_logins_at_once(api):
    username, user_id, headers, key = await _user(api)
    admin = await api.admin()
    r = await api.client.patch(f"/api/auth/users/{user_id}", json={"disabled": True}, headers=admin)
    assert r.status_code == 200 and r.json()["disabled"] is True, r.text
    assert_error(await api.client.get("/api/auth/me", headers=headers), 401, "unauthorized")
    assert_error(await api.client.get("/api/auth/me", headers=bearer(key)), 401, "unauthorized")
    assert_error(await api.login(username), 401, "invalid_credentials")
    r = await api.client.patch(f"/api/auth/users/{user_id}", json={"disabled": False}, headers=admin)
    assert r.status_code == 200 and r.json()["disabled"] is False
    assert await _ok(api, bearer(await api.token(username))) == 200
    assert await _ok(api, bearer(key)) == 200  # keys were paused with the account, not revoked
    assert await _ok(api, headers) == 401  # the old session stays ended


async def test_a_role_change_ends_the_sessions_that_carry_the_old_role(api):
    username, user_id, headers, _ = await _user(api)
    admin = await api.admin()
    r = await api.client.patch(f"/api/auth/users/{user_id}", json={"role": "admin"}, headers=admin)
    assert r.status_code == 200 and r.json()["role"] == "admin", r.text
    assert await _ok(api, headers) == 401
    promoted = bearer(await api.token(username))
    assert (await api.client.get("/api/auth/users", headers=promoted)).status_code == 200
    await api.client.patch(f"/api/auth/users/{user_id}", json={"role": "user"}, headers=admin)
    assert_error(await api.client.get("/api/auth/users", headers=promoted), 401, "unauthorized")


async def test_a_password_reset_ends_sessions_and_the_old_password(api):
    username, user_id, headers, _ = await _user(api)
    admin = await api.admin()
    r = await api.client.post(f"/api/auth/users/{user_id}/password", json={"password": NEW_PASSWORD}, headers=admin)
    assert r.status_code == 204, r.text
    assert await _ok(api, headers) == 401
    assert_error(await api.login(username, PASSWORD), 401, "invalid_credentials")
    assert await _ok(api, bearer(await api.token(username, NEW_PASSWORD))) == 200


async def test_a_reset_password_must_be_strong(api):
    _, user_id, headers, _ = await _user(api)
    r = await api.client.post(
        f"/api/auth/users/{user_id}/password", json={"password": "short"}, headers=await api.admin()
    )
    assert_error(r, 422, "weak_password", "password")
    assert await _ok(api, headers) == 200  # nothing changed


async def test_revoking_ends_every_session_and_key_but_not_the_account(api):
    username, user_id, headers, key = await _user(api)
    second = bearer(await api.token(username))
    r = await api.client.post(f"/api/auth/users/{user_id}/revoke", headers=await api.admin())
    assert r.status_code == 204, r.text
    for old in (headers, second, bearer(key)):
        assert_error(await api.client.get("/api/auth/me", headers=old), 401, "unauthorized")
    fresh = bearer(await api.token(username))
    assert await _ok(api, fresh) == 200
    assert (await api.client.get("/api/auth/api-keys", headers=fresh)).json() == []


async def test_revocation_reaches_running_and_later_services(api, settings):
    _, user_id, headers, _ = await _user(api)
    async with AsyncTestClient(app=create_app(settings)) as elsewhere:
        assert (await elsewhere.get("/api/auth/me", headers=headers)).status_code == 200
        assert (
            await api.client.post(f"/api/auth/users/{user_id}/revoke", headers=await api.admin())
        ).status_code == 204
        for _ in range(50):
            if (await elsewhere.get("/api/auth/me", headers=headers)).status_code == 401:
                break
            await asyncio.sleep(0.1)
        assert_error(await elsewhere.get("/api/auth/me", headers=headers), 401, "unauthorized")
    async with AsyncTestClient(app=create_app(settings)) as later:
        assert_error(await later.get("/api/auth/me", headers=headers), 401, "unauthorized")


async def test_revocation_is_announced_on_nats(api, settings):
    _, user_id, _, _ = await _user(api)
    nc = await connect_bus(settings.nats_url, "test", [], user=settings.nats_user, password=settings.nats_password)
    try:
        sub = await nc.subscribe(contracts.Subjects.USER_REVOKED)
        await nc.flush()
        r = await api.client.patch(f"/api/auth/users/{user_id}", json={"disabled": True}, headers=await api.admin())
        assert r.status_code == 200
        event = contracts.decode((await sub.next_msg(timeout=5)).data)
        assert isinstance(event, contracts.UserRevoked)
        assert (event.user_id, event.generation, event.reason) == (user_id, 1, "disabled")
    finally:
        await close_bus(nc)


async def test_an_admin_cannot_disable_or_demote_themself(api):
    admin = await api.admin()
    me = (await api.client.get("/api/auth/me", headers=admin)).json()["id"]
    for change in ({"disabled": True}, {"role": "user"}):
        assert_error(await api.client.patch(f"/api/auth/users/{me}", json=change, headers=admin), 409, "own_account")
    assert await _ok(api, admin) == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("patch", "/api/auth/users/usr_nobody", {"disabled": True}),
        ("post", "/api/auth/users/usr_nobody/password", {"password": NEW_PASSWORD}),
        ("post", "/api/auth/users/usr_nobody/revoke", None),
    ],
)
async def test_an_unknown_user_is_404(api, method, path, body):
    kwargs = {"json": body} if body is not None else {}
    assert_error(await getattr(api.client, method)(path, headers=await api.admin(), **kwargs), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"), [({"role": "root"}, "role"), ({"disabled": "yes"}, "disabled"), ({"ban": True}, "ban")]
)
async def test_a_bad_change_is_422(api, body, field):
    _, user_id, _, _ = await _user(api)
    r = await api.client.patch(f"/api/auth/users/{user_id}", json=body, headers=await api.admin())
    assert_error(r, 422, "invalid_field", field)
