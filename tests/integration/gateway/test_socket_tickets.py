"""WebSockets open with a one-time ticket, never with a token in the URL (issue 14, item 6): two gateways in-process
on real ports, sharing the session's NATS (the tickets' KV bucket) and Postgres."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime

import httpx
import pytest
import uvicorn
import websockets
from websockets.exceptions import InvalidStatus

from llmct.embedded import free_port
from services.common import contracts
from services.common.security import issue_token
from services.gateway.app import create_app
from tests.helpers import unique

pytestmark = [pytest.mark.integration]

TTL_S = 2.0


@pytest.fixture(scope="module")
async def gateways(settings):
    """Two gateways (as behind a load balancer), their tickets good for TTL_S; yields their base URLs."""
    own = dataclasses.replace(settings, ws_ticket_ttl_s=TTL_S)
    servers = [uvicorn.Server(uvicorn.Config(create_app(own), port=free_port(), log_level="warning")) for _ in "ab"]
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    async with asyncio.timeout(30):
        while not all(server.started for server in servers):
            await asyncio.sleep(0.05)
    yield [f"http://127.0.0.1:{server.config.port}" for server in servers]
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks)


def caller(settings, name: str) -> dict:
    token, _, _ = issue_token(settings.secret_key, user_id=unique("usr"), username=name, role="user", ttl_s=600)
    return {"token": token, "name": name, "headers": {"Authorization": f"Bearer {token}"}}


async def ticket_from(base: str, headers: dict) -> str:
    async with httpx.AsyncClient(base_url=base) as client:
        r = await client.post("/api/ws/tickets", headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["expires_in"] == int(TTL_S)
    return r.json()["ticket"]


def ws(base: str, query: str) -> str:
    return base.replace("http", "ws") + "/api/ws/echo" + query


async def echoes(url: str, **options) -> str:
    async with websockets.connect(url, **options) as socket:
        await socket.send("hi")
        return json.loads(await socket.recv())["user"]


async def refused(url: str, **options) -> int:
    with pytest.raises(InvalidStatus) as caught:
        await echoes(url, **options)
    return caught.value.response.status_code


async def test_a_ticket_opens_one_socket_on_any_gateway(settings, gateways):
    one, other = gateways
    me = caller(settings, unique("ticket-user"))
    ticket = await ticket_from(one, me["headers"])
    assert await echoes(ws(other, f"?ticket={ticket}")) == me["name"]  # issued by one gateway, used on another
    assert await refused(ws(one, f"?ticket={ticket}")) == 403  # used once: gone everywhere
    assert await refused(ws(other, f"?ticket={ticket}")) == 403


async def test_two_sockets_racing_with_one_ticket_open_one(settings, gateways):
    me = caller(settings, unique("ticket-racer"))
    ticket = await ticket_from(gateways[0], me["headers"])
    results = await asyncio.gather(
        *(echoes(ws(base, f"?ticket={ticket}")) for base in gateways * 3), return_exceptions=True
    )
    assert sum(result == me["name"] for result in results) == 1, results
    assert all(isinstance(result, InvalidStatus) for result in results if result != me["name"])


async def test_an_expired_ticket_is_refused(settings, gateways):
    me = caller(settings, unique("ticket-late"))
    ticket = await ticket_from(gateways[0], me["headers"])
    await asyncio.sleep(TTL_S + 0.5)
    assert await refused(ws(gateways[0], f"?ticket={ticket}")) == 403


async def test_credentials_in_the_url_are_refused(settings, gateways):
    base = gateways[0]
    me = caller(settings, unique("url-token"))
    for query in (f"?token={me['token']}", f"?access_token={me['token']}", f"?ticket=x&token={me['token']}"):
        assert await refused(ws(base, query)) == 403, query
    for query in ("", "?ticket=", "?ticket=forged"):
        assert await refused(ws(base, query)) == 403, query
    # Clients that can send headers still may.
    assert await echoes(ws(base, ""), additional_headers=me["headers"]) == me["name"]


async def test_a_ticket_needs_a_caller_and_dies_with_its_session(settings, gateways, bus):
    base = gateways[0]
    async with httpx.AsyncClient(base_url=base) as client:
        assert (await client.post("/api/ws/tickets")).status_code == 401
    token, session, expires = issue_token(
        settings.secret_key, user_id=unique("usr"), username="x", role="user", ttl_s=600
    )
    ticket = await ticket_from(base, {"Authorization": f"Bearer {token}"})
    # Logged out (as auth announces it) between asking for the ticket and using it.
    revoked = contracts.SessionRevoked(session_id=session, expires_at=datetime.fromtimestamp(expires, UTC))
    await bus.publish(contracts.Subjects.SESSION_REVOKED, contracts.encode(revoked))
    await bus.flush()
    await asyncio.sleep(0.2)
    assert await refused(ws(base, f"?ticket={ticket}")) == 403
