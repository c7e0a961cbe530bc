"""Every failure answers {"error": {"code", "message", "field"}}, and nothing a caller sends makes a 500."""

import pytest

from tests.integration.auth.helpers import assert_error, bearer

pytestmark = pytest.mark.integration

JSON = {"Content-Type": "application/json"}
BAD_BODIES = [b"{not json", b'{"username": ', b"\xff\xfe", b"{'single': 'quotes'}", b'{"a": 1} trailing']

# POST routes that read a JSON body, and who may call them.
BODY_ROUTES = [
    ("/api/auth/register", None),
    ("/api/auth/login", None),
    ("/api/auth/api-keys", "user"),
    ("/api/auth/invites", "admin"),
]


async def _headers(api, who: str | None) -> dict:
    if who == "admin":
        return {**JSON, **await api.admin()}
    if who == "user":
        return {**JSON, **(await api.new_user())[1]}
    return {**JSON, "X-Forwarded-For": api.address}


@pytest.mark.parametrize(("path", "who"), BODY_ROUTES)
@pytest.mark.parametrize("content", BAD_BODIES)
async def test_malformed_json_is_400_on_every_body_route(api, path, who, content):
    r = await api.client.post(path, content=content, headers=await _headers(api, who))
    assert_error(r, 400, "malformed_json", None)


@pytest.mark.parametrize("path", [path for path, who in BODY_ROUTES if who])
async def test_malformed_json_never_skips_authentication(api, path):
    r = await api.client.post(path, content=b"{not json", headers=JSON)
    assert_error(r, 401, "unauthorized")


async def test_logout_ignores_a_malformed_body(api):
    r = await api.client.post("/api/auth/logout", content=b"{not json", headers=JSON)
    assert_error(r, 401, "unauthorized")
    _, headers = await api.new_user()
    r = await api.client.post("/api/auth/logout", content=b"{not json", headers={**JSON, **headers})
    assert r.status_code == 204, r.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/auth/users?cursor=a%00b"),
        ("delete", "/api/auth/invites/a%00b"),
        ("delete", "/api/auth/api-keys/a%00b"),
    ],
)
async def test_nul_in_a_path_or_query_is_422_not_500(api, method, path):
    r = await getattr(api.client, method)(path, headers=await api.admin())
    assert_error(r, 422, "invalid_field")


async def test_nul_in_body_text_is_422_naming_the_field(api):
    r = await api.client.post(
        "/api/auth/login", json={"username": "a\u0000b", "password": "x"}, headers={"X-Forwarded-For": api.address}
    )
    assert_error(r, 422, "invalid_field", "username")
    _, headers = await api.new_user()
    r = await api.client.post("/api/auth/api-keys", json={"name": "ci\u0000"}, headers=headers)
    assert_error(r, 422, "invalid_field", "name")


async def test_unknown_route_and_wrong_method_use_the_error_shape(api):
    assert_error(await api.client.get("/api/auth/nope", headers=await api.admin()), 404, "not_found")
    assert_error(await api.client.get("/api/auth/login"), 405, "method_not_allowed")


@pytest.mark.parametrize(("query", "field"), [("limit=0", "limit"), ("limit=201", "limit"), ("limit=many", "limit")])
async def test_bad_query_parameter_is_422_naming_it(api, query, field):
    r = await api.client.get(f"/api/auth/users?{query}", headers=await api.admin())
    assert_error(r, 422, "invalid_field", field)


async def test_bad_bearer_is_401_with_challenge(api):
    r = await api.client.get("/api/auth/me", headers=bearer("garbage"))
    assert_error(r, 401, "unauthorized", None)
    assert r.headers["WWW-Authenticate"] == "Bearer"
