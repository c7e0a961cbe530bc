"""Accounts through the gateway: revocation reaches every service and open WebSockets, key scopes hold on every
route, and failed logins slow down the client that guesses, as the gateway reports it, not everyone."""

import asyncio
import secrets

import httpx
import pytest
import websockets

from .helpers import admin_token, login, unique

pytestmark = pytest.mark.e2e


def _ws(stack, headers: dict):
    return websockets.connect(stack.gateway_url.replace("http", "ws") + "/api/ws/echo", additional_headers=headers)


async def _closed_with(ws) -> int | None:
    """The close code, once the gateway closes the socket (at most a few seconds)."""
    async with asyncio.timeout(10):
        try:
            while True:
                await ws.recv()
        except websockets.exceptions.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


async def _user(gw: httpx.AsyncClient, stack) -> tuple[str, dict, dict]:
    """A new user: (id, token headers, API key headers)."""
    headers = await login(gw, stack.invite_code, unique("acct"))
    user_id = (await gw.get("/api/auth/me", headers=headers)).json()["id"]
    key = (await gw.post("/api/auth/api-keys", json={"name": "k"}, headers=headers)).json()["key"]
    return user_id, headers, {"Authorization": f"Bearer {key}"}


async def test_revoking_a_user_closes_their_sockets_and_every_service_refuses_them(gw, stack):
    user_id, headers, key = await _user(gw, stack)
    admin = {"Authorization": f"Bearer {await admin_token(gw, stack)}"}
    async with _ws(stack, headers) as by_token, _ws(stack, key) as by_key, _ws(stack, admin) as bystander:
        await by_token.send("hi")
        assert "hi" in await by_token.recv()
        r = await gw.post(f"/api/auth/users/{user_id}/revoke", headers=admin)
        assert r.status_code == 204, r.text
        assert await _closed_with(by_token) == 4401
        assert await _closed_with(by_key) == 4401
        await bystander.send("still here")  # someone else's socket stays open
        assert "still here" in await bystander.recv()
    for old in (headers, key):  # the scheduler's routes, through the gateway: the next request
        assert (await gw.get("/api/jobs", headers=old)).status_code == 401
        assert (await gw.get("/api/datasets", headers=old)).status_code == 401


async def test_disabling_a_user_closes_their_sockets(gw, stack):
    user_id, headers, _ = await _user(gw, stack)
    admin = {"Authorization": f"Bearer {await admin_token(gw, stack)}"}
    async with _ws(stack, headers) as ws:
        r = await gw.patch(f"/api/auth/users/{user_id}", json={"disabled": True}, headers=admin)
        assert r.status_code == 200, r.text
        assert await _closed_with(ws) == 4401
    assert (await gw.get("/api/jobs", headers=headers)).status_code == 401


async def test_logging_out_closes_that_sessions_sockets_only(gw, stack):
    username = unique("acct")
    headers = await login(gw, stack.invite_code, username)
    r = await gw.post("/api/auth/login", json={"username": username, "password": "train-pass-2026"})
    other = {"Authorization": f"Bearer {r.json()['access_token']}"}
    async with _ws(stack, headers) as ws, _ws(stack, other) as other_ws:
        assert (await gw.post("/api/auth/logout", headers=headers)).status_code == 204
        assert await _closed_with(ws) == 4401
        await other_ws.send("on")
        assert "on" in await other_ws.recv()


async def _key(gw, headers: dict, scope: str) -> dict:
    r = await gw.post("/api/auth/api-keys", json={"name": scope, "scope": scope}, headers=headers)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


async def test_api_key_scopes_hold_on_every_service(gw, stack):
    _, headers, _ = await _user(gw, stack)
    read_only, inference = await _key(gw, headers, "read_only"), await _key(gw, headers, "inference")
    assert (await gw.get("/api/jobs", headers=read_only)).status_code == 200
    assert (await gw.get("/api/datasets", headers=read_only)).status_code == 200
    r = await gw.post("/api/jobs", json={"kind": "train"}, headers=read_only)
    assert r.status_code == 403 and r.json()["error"]["code"] == "api_key_scope", r.text
    r = await gw.post("/v1/chat/completions", json={"model": "x", "messages": []}, headers=read_only)
    assert r.status_code == 403, r.text
    assert (await gw.get("/v1/models", headers=inference)).status_code == 200
    r = await gw.post("/api/deployments", json={"model": "x"}, headers=inference)
    assert r.status_code == 403 and r.json()["error"]["code"] == "api_key_scope", r.text
    for path in ("/api/jobs", "/api/datasets", "/api/auth/me"):
        r = await gw.get(path, headers=inference)
        assert r.status_code == 403 and r.json()["error"]["code"] == "api_key_scope", (path, r.text)
    with pytest.raises(websockets.exceptions.WebSocketException):
        async with _ws(stack, inference) as ws:
            await ws.send("x")
            await ws.recv()


async def test_a_guessing_client_behind_a_trusted_proxy_waits_while_the_owner_logs_in(gw, stack):
    """The test calls from loopback, a trusted proxy: what it puts in X-Forwarded-For is the client, as a TLS
    proxy in front of the gateway would report it. The gateway passes it on and auth reads it through."""
    username = unique("acct")
    await login(gw, stack.invite_code, username)
    attacker, owner = (f"198.51.100.{secrets.randbelow(250)}", f"203.0.113.{secrets.randbelow(250)}")

    async def attempt(password: str, client: str) -> httpx.Response:
        return await gw.post(
            "/api/auth/login", json={"username": username, "password": password}, headers={"X-Forwarded-For": client}
        )

    for _ in range(5):  # LLMCT_LOGIN_MAX_FAILURES
        assert (await attempt("wrong-guess-1", attacker)).status_code == 401
    paused = await attempt("train-pass-2026", attacker)
    assert paused.status_code == 429 and int(paused.headers["Retry-After"]) >= 1
    assert (await attempt("train-pass-2026", owner)).status_code == 200
