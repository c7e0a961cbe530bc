"""Personal API keys: shown once, usable as a bearer, private to their owner, dead once revoked."""

import pytest

from tests.integration.auth.helpers import assert_error, bearer

pytestmark = pytest.mark.integration

KEYS = "/api/auth/api-keys"


async def _create(api, headers: dict, name: str = "ci", **more) -> dict:
    r = await api.client.post(KEYS, json={"name": name, **more}, headers=headers)
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
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 65}, "name"),
        ({}, "name"),
        ({"name": "ok", "scopes": []}, "scopes"),
        ({"name": "ok", "scope": "admin"}, "scope"),
        ({"name": "ok", "expires_in_days": 0}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": 4000}, "expires_in_days"),
    ],
)
async def test_bad_key_request_is_422(api, body, field):
    _, headers = await api.new_user()
    assert_error(await api.client.post(KEYS, json=body, headers=headers), 422, "invalid_field", field)


async def test_a_key_may_expire(api, pool):
    _, headers = await api.new_user()
    created = await _create(api, headers, expires_in_days=30)
    assert created["expires_at"] is not None and created["scope"] == "full"
    assert (await api.client.get("/api/auth/me", headers=bearer(created["key"]))).status_code == 200
    await pool.execute("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", created["id"])
    r = await api.client.get("/api/auth/me", headers=bearer(created["key"]))
    assert "expired" in assert_error(r, 401, "unauthorized")["message"]
    assert (await _list(api, headers))[0]["expires_at"] is not None  # still listed, to be seen and deleted


async def test_a_read_only_key_only_reads(api):
    _, headers = await api.new_user()
    key = bearer((await _create(api, headers, scope="read_only"))["key"])
    assert (await api.client.get("/api/auth/me", headers=key)).status_code == 200
    assert (await api.client.get(KEYS, headers=key)).status_code == 200
    assert_error(await api.client.post(KEYS, json={"name": "wider"}, headers=key), 403, "api_key_scope")
    created = await _create(api, headers)
    assert_error(await api.client.delete(f"{KEYS}/{created['id']}", headers=key), 403, "api_key_scope")
    assert_error(await api.client.post("/api/auth/logout", headers=key), 403, "api_key_scope")


async def test_an_inference_key_reaches_only_the_openai_routes(api):
    _, headers = await api.new_user()
    created = await _create(api, headers, scope="inference")
    assert created["scope"] == "inference"
    key = bearer(created["key"])
    assert_error(await api.client.get("/api/auth/me", headers=key), 403, "api_key_scope")
    assert_error(await api.client.post(KEYS, json={"name": "wider"}, headers=key), 403, "api_key_scope")
