"""Registration: invite codes, taken names, weak passwords and bodies that do not fit."""

import dataclasses

import pytest
from litestar.testing import AsyncTestClient

from services.auth.app import create_app
from tests.integration.auth.helpers import PASSWORD, Api, assert_error, from_peer, unique

pytestmark = pytest.mark.integration


async def test_register_returns_the_account_without_secrets(api):
    username, r = await api.register()
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["username"] == username and body["role"] == "user" and body["id"].startswith("usr_")
    assert set(body) == {"id", "username", "role", "created_at", "disabled"} and body["disabled"] is False


@pytest.mark.parametrize("invite_code", ["wrong-invite", "", "test-invite ", "TEST-INVITE", "été-invité"])
async def test_wrong_invite_code_is_403(api, invite_code):
    username, r = await api.register(invite_code=invite_code)
    assert_error(r, 403, "invalid_invite_code", "invite_code")
    assert (await api.login(username)).status_code == 401  # nothing was created


async def test_missing_invite_code_is_403(api):
    r = await api.client.post("/api/auth/register", json={"username": unique(), "password": PASSWORD})
    assert_error(r, 403, "invalid_invite_code", "invite_code")


async def test_taken_username_is_409(api):
    username, first = await api.register()
    assert first.status_code == 201
    _, again = await api.register(username, password="another-pass-77")
    assert_error(again, 409, "username_taken", "username")
    assert (await api.login(username, "another-pass-77")).status_code == 401  # the first account is untouched


@pytest.mark.parametrize(
    "password",
    [
        "short-1",  # under 10 characters
        "aaaaabbbbbaaaa",  # under 5 different characters
        "password123",  # common
        "Password123",  # common, whatever the case
    ],
)
async def test_weak_password_is_422_on_password(api, password):
    _, r = await api.register(password=password)
    assert_error(r, 422, "weak_password", "password")


async def test_password_containing_the_username_is_422(api):
    username = unique("weak")
    _, r = await api.register(username, password=f"xx{username.upper()}9")
    assert_error(r, 422, "weak_password", "password")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": 5, "password": PASSWORD, "invite_code": "test-invite"}, "username"),
        ({"username": "valid-name", "password": ["x"], "invite_code": "test-invite"}, "password"),
        ({"username": "valid-name", "password": PASSWORD, "invite_code": 7}, "invite_code"),
        ({"password": PASSWORD, "invite_code": "test-invite"}, "username"),
        ({"username": "valid-name", "invite_code": "test-invite"}, "password"),
        ({"username": "valid-name", "password": PASSWORD, "invite_code": "test-invite", "role": "admin"}, "role"),
        ({"username": "Upper", "password": PASSWORD, "invite_code": "test-invite"}, "username"),
        ({"username": "-dash-first", "password": PASSWORD, "invite_code": "test-invite"}, "username"),
        ({"username": "ab", "password": PASSWORD, "invite_code": "test-invite"}, "username"),
        ({"username": "x" * 33, "password": PASSWORD, "invite_code": "test-invite"}, "username"),
        ({"username": "with space", "password": PASSWORD, "invite_code": "test-invite"}, "username"),
        ({"username": "newline\n", "password": PASSWORD, "invite_code": "test-invite"}, "username"),
        ({"username": "valid-name", "password": "", "invite_code": "test-invite"}, "password"),
        ({"username": "valid-name", "password": PASSWORD, "invite_code": "nul\u0000"}, "invite_code"),
    ],
)
async def test_structurally_wrong_body_is_422_naming_the_field(api, body, field):
    r = await api.client.post("/api/auth/register", json=body)
    assert_error(r, 422, "invalid_field", field)


@pytest.mark.parametrize("body", [[], ["username"], "a string", 42, None])
async def test_body_that_is_not_an_object_is_422(api, body):
    content = b"null" if body is None else None  # httpx sends no body at all for json=None
    r = await api.client.post(
        "/api/auth/register", json=body, content=content, headers={"Content-Type": "application/json"}
    )
    assert_error(r, 422, "invalid_field", None)


async def test_missing_body_is_400(api):
    r = await api.client.post("/api/auth/register", content=b"", headers={"Content-Type": "application/json"})
    assert_error(r, 400, "malformed_json", None)


async def test_privilege_cannot_be_chosen_at_registration(api):
    username, r = await api.register()
    assert r.json()["role"] == "user"
    me = await api.client.get("/api/auth/me", headers={"Authorization": f"Bearer {await api.token(username)}"})
    assert me.json()["role"] == "user"


async def test_registration_is_capped_per_client(settings):
    """A client may try to register only LLMCT_REGISTER_MAX times a window, right invite code or not."""
    capped = dataclasses.replace(settings, register_max=3)
    async with AsyncTestClient(app=from_peer(create_app(capped), "127.0.0.1")) as client:
        api = Api(client, capped)
        assert (await api.register())[1].status_code == 201
        assert_error((await api.register(invite_code="a-guess"))[1], 403, "invalid_invite_code")
        assert (await api.register())[1].status_code == 201
        username, refused = await api.register()
        assert_error(refused, 429, "too_many_attempts")
        assert 1 <= int(refused.headers["Retry-After"]) <= capped.register_window_s
        assert (await api.login(username)).status_code == 401  # nothing was created
        api.address = "10.251.0.1"  # another client is not held back
        assert (await api.register())[1].status_code == 201
