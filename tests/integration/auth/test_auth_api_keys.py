"""Personal API keys: shown once, usable as a bearer, private to their owner, dead once revoked."""

import pytest

from tests.integration.auth.helpers import assert_error, bearer

pytestmark = pytest.mark.integration

KEYS = "/api/auth/api-keys"


async def _create(api, headers: dict, name: str = "ci") -> dict:
    r = await api.client.post(KEYS, json={"name": name}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def _list(api, headers: dict) -> list[dict]:
    r = await api.client.get(KEYS, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_key_is_shown_once_and_works_as_a_bearer(api):
    username, headers = await api.new_user()
    created = await _create(api, headers, "laptop")
    assert created["key"].startswith("llmct_") and len(created["key"]) > 40
    assert created["prefix"] == created["key"][: len(created["prefix"])] and created["name"] == "laptop"
    assert created["id"].startswith("key_")
    me = await api.client.get("/api/auth/me", headers=bearer(created["key"]))
    assert me.status_code == 200 and me.json()["username"] == username


async def test_list_shows_keys_without_the_secret(api):
    _, headers = await api.new_user()
    created = await _create(api, headers)
    await api.client.get("/api/auth/me", headers=bearer(created["key"]))
    [listed] = await _list(api, headers)
    assert "key" not in listed and created["key"] not in str(listed)
    assert listed["id"] == created["id"] and listed["prefix"] == created["prefix"]
    assert listed["last_used_at"] is not None


async def test_revoked_key_is_401(api):
    _, headers = await api.new_user()
    created = await _create(api, headers)
    r = await api.client.delete(f"{KEYS}/{created['id']}", headers=headers)
    assert r.status_code == 204, r.text
    assert_error(await api.client.get("/api/auth/me", headers=bearer(created["key"])), 401, "unauthorized")
    assert await _list(api, headers) == []
    assert_error(await api.client.delete(f"{KEYS}/{created['id']}", headers=headers), 404, "not_found")


async def test_keys_are_private_to_their_owner(api):
    _, alice = await api.new_user()
    _, bob = await api.new_user()
    alices = await _create(api, alice)
    assert await _list(api, bob) == []
    assert_error(await api.client.delete(f"{KEYS}/{alices['id']}", headers=bob), 404, "not_found")
    assert (await api.client.get("/api/auth/me", headers=bearer(alices["key"]))).status_code == 200


async def test_revoking_an_unknown_key_is_404(api):
    _, headers = await api.new_user()
    assert_error(await api.client.delete(f"{KEYS}/key_0000000000000000", headers=headers), 404, "not_found")


async def test_a_key_can_manage_keys_but_a_disabled_owner_cannot_use_it(api, pool):
    username, headers = await api.new_user()
    key = (await _create(api, headers))["key"]
    second = await _create(api, bearer(key), "made-by-key")
    assert {k["id"] for k in await _list(api, headers)} >= {second["id"]}
    await pool.execute("UPDATE users SET disabled = true WHERE username = $1", username)
    assert_error(await api.client.get("/api/auth/me", headers=bearer(key)), 401, "unauthorized")


@pytest.mark.parametrize(
    ("body", "field"),
    [({"name": ""}, "name"), ({"name": "x" * 65}, "name"), ({}, "name"), ({"name": "ok", "scopes": []}, "scopes")],
)
async def test_bad_key_request_is_422(api, body, field):
    _, headers = await api.new_user()
    assert_error(await api.client.post(KEYS, json=body, headers=headers), 422, "invalid_field", field)
