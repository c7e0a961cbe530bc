"""Admin routes: invite codes an admin makes, and the paginated list of accounts."""

import pytest

from tests.integration.auth.helpers import assert_error, bearer, unique

pytestmark = pytest.mark.integration


async def _invite(api, **body) -> dict:
    r = await api.client.post("/api/auth/invites", json=body, headers=await api.admin())
    assert r.status_code == 201, r.text
    return r.json()


async def test_single_use_invite_works_once(api):
    invite = await _invite(api, max_uses=1)
    assert invite["max_uses"] == 1 and invite["uses"] == 0 and invite["code"]
    first, r = await api.register(invite_code=invite["code"])
    assert r.status_code == 201, r.text
    _, again = await api.register(invite_code=invite["code"])
    assert_error(again, 403, "invalid_invite_code", "invite_code")
    assert (await api.login(first)).status_code == 200


async def test_invite_counts_its_uses(api):
    invite = await _invite(api, max_uses=2)
    for _ in range(2):
        assert (await api.register(invite_code=invite["code"]))[1].status_code == 201
    assert_error((await api.register(invite_code=invite["code"]))[1], 403, "invalid_invite_code")
    listed = await api.client.get("/api/auth/invites", headers=await api.admin())
    mine = next(i for i in listed.json() if i["code"] == invite["code"])
    assert mine["uses"] == 2


async def test_taken_username_gives_the_invite_seat_back(api):
    taken, r = await api.register()
    assert r.status_code == 201
    invite = await _invite(api, max_uses=1)
    assert_error((await api.register(taken, invite_code=invite["code"]))[1], 409, "username_taken")
    assert (await api.register(invite_code=invite["code"]))[1].status_code == 201


async def test_weak_password_does_not_spend_the_invite(api):
    invite = await _invite(api, max_uses=1)
    assert_error((await api.register(password="short", invite_code=invite["code"]))[1], 422, "weak_password")
    assert (await api.register(invite_code=invite["code"]))[1].status_code == 201


async def test_revoked_invite_is_403(api):
    invite = await _invite(api, max_uses=5)
    r = await api.client.delete(f"/api/auth/invites/{invite['code']}", headers=await api.admin())
    assert r.status_code == 204, r.text
    assert_error((await api.register(invite_code=invite["code"]))[1], 403, "invalid_invite_code")
    listed = await api.client.get("/api/auth/invites", headers=await api.admin())
    assert next(i for i in listed.json() if i["code"] == invite["code"])["revoked_at"] is not None


async def test_revoking_an_unknown_invite_is_404(api):
    r = await api.client.delete("/api/auth/invites/no-such-code", headers=await api.admin())
    assert_error(r, 404, "not_found")


async def test_expired_invite_is_403(api, pool):
    invite = await _invite(api, max_uses=5)
    await pool.execute(
        "UPDATE invite_codes SET expires_at = now() - interval '1 minute' WHERE code = $1", invite["code"]
    )
    assert_error((await api.register(invite_code=invite["code"]))[1], 403, "invalid_invite_code")


async def test_invite_without_expiry(api):
    invite = await _invite(api, max_uses=1, expires_in_hours=None)
    assert invite["expires_at"] is None
    assert (await api.register(invite_code=invite["code"]))[1].status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_uses": 0}, "max_uses"),
        ({"max_uses": "one"}, "max_uses"),
        ({"expires_in_hours": 0}, "expires_in_hours"),
        ({"max_uses": 1, "code": "mine"}, "code"),
    ],
)
async def test_bad_invite_request_is_422(api, body, field):
    r = await api.client.post("/api/auth/invites", json=body, headers=await api.admin())
    assert_error(r, 422, "invalid_field", field)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/auth/invites", {"max_uses": 1}),
        ("get", "/api/auth/invites", None),
        ("delete", "/api/auth/invites/whatever", None),
        ("get", "/api/auth/users", None),
        ("patch", "/api/auth/users/usr_x", {"disabled": True}),
        ("post", "/api/auth/users/usr_x/password", {"password": "a-new-pass-77"}),
        ("post", "/api/auth/users/usr_x/revoke", None),
    ],
)
async def test_admin_routes_refuse_plain_users_and_strangers(api, method, path, body):
    kwargs = {"json": body} if body is not None else {}
    _, user = await api.new_user()
    assert_error(await getattr(api.client, method)(path, headers=user, **kwargs), 403, "forbidden")
    assert_error(await getattr(api.client, method)(path, **kwargs), 401, "unauthorized")


async def test_plain_user_api_key_cannot_reach_admin_routes(api):
    _, user = await api.new_user()
    key = (await api.client.post("/api/auth/api-keys", json={"name": "k"}, headers=user)).json()["key"]
    assert_error(await api.client.get("/api/auth/users", headers=bearer(key)), 403, "forbidden")


async def _page(api, admin, **params) -> dict:
    r = await api.client.get("/api/auth/users", params=params, headers=admin)
    assert r.status_code == 200, r.text
    return r.json()


async def test_users_paginate_by_username(api):
    prefix = unique("page")
    names = [f"{prefix}-{n}" for n in "abc"]
    for name in names:
        assert (await api.register(name))[1].status_code == 201
    admin = await api.admin()
    first = await _page(api, admin, cursor=prefix, limit=2)
    assert [u["username"] for u in first["items"]] == names[:2]
    assert first["next_cursor"] == names[1]
    second = await _page(api, admin, cursor=first["next_cursor"], limit=2)
    assert second["items"][0]["username"] == names[2]
    assert all(set(u) == {"id", "username", "role", "created_at", "disabled"} for u in first["items"] + second["items"])


async def test_walking_every_page_sees_each_user_once(api, pool):
    admin, seen, cursor = await api.admin(), [], None
    while True:
        page = await _page(api, admin, limit=3, **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= 3
        seen += [u["username"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert cursor == seen[-1]
    # Postgres's collation decides the order, not Python's.
    rows = await pool.fetch("SELECT username FROM users ORDER BY username")
    assert seen == [row["username"] for row in rows] and "root-admin" in seen


async def test_after_the_last_user_the_page_is_empty(api, pool):
    last = await pool.fetchval("SELECT username FROM users ORDER BY username DESC LIMIT 1")
    page = await _page(api, await api.admin(), cursor=last, limit=5)
    assert page == {"items": [], "next_cursor": None}
