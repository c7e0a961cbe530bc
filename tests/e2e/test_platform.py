"""The running platform: discovery over NATS, health, docs, WebSockets and forwarding through the gateway."""

import asyncio
import json

import httpx
import nats
import pytest
import websockets

from .helpers import bearer, unique

pytestmark = pytest.mark.e2e

SERVICES = {"auth", "scheduler", "datasets", "registry", "agent", "gateway"}


async def user_token(gw, stack, name: str) -> str:
    creds = {"username": name, "password": "platform-pass-31"}
    r = await gw.post("/api/auth/register", json={**creds, "invite_code": stack.invite_code})
    assert r.status_code == 201, r.text
    return (await gw.post("/api/auth/login", json=creds)).json()["access_token"]


async def test_every_service_answers_nats_discovery(stack):
    nc = await nats.connect(stack.env["NATS_URL"])
    inbox = nc.new_inbox()
    replies = []

    async def collect(msg):
        replies.append(json.loads(msg.data))

    await nc.subscribe(inbox, cb=collect)
    await nc.publish("$SRV.PING", b"", reply=inbox)  # every instance answers; request() would keep one
    await asyncio.sleep(0.5)
    await nc.close()
    assert {r["name"].removeprefix("llmct-") for r in replies} >= SERVICES


async def test_health_and_metrics_of_every_service(stack):
    async with httpx.AsyncClient(timeout=5) as client:
        for name, service in stack.services.items():
            r = await client.get(service.health_url)
            assert r.status_code == 200 and r.json()["service"] == name
            metrics = await client.get(f"http://127.0.0.1:{service.port}/metrics")
            assert metrics.status_code == 200 and "# TYPE" in metrics.text


async def test_agent_heartbeats_reach_nats(stack):
    nc = await nats.connect(stack.env["NATS_URL"])
    sub = await nc.subscribe("agent.heartbeat.>")
    msg = await sub.next_msg(timeout=5)
    await nc.close()
    beat = json.loads(msg.data)
    assert beat["type"] == "agent_heartbeat" and beat["memory_total_mb"] > 0


async def test_one_openapi_document_and_docs_page(gw):
    doc = (await gw.get("/api/openapi.json")).json()
    assert "/api/auth/login" in doc["paths"] and "/api/auth/me" in doc["paths"]
    assert all(path.startswith(("/api/", "/v1/")) for path in doc["paths"]), "no internal routes (/health...)"
    assert "/v1/chat/completions" in doc["paths"] and "/api/deployments/{deployment_id}/chat" in doc["paths"]
    assert "/api/openapi.json" not in doc["paths"]
    page = await gw.get("/api/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert (await gw.get("/api/docs/static/swagger-ui-bundle.js")).status_code == 200


async def test_bad_input_through_gateway(gw):
    r = await gw.post("/api/auth/login", content=b"{not json", headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500 and "error" in r.json()
    r = await gw.get("/api/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await gw.get("/api/auth/me", headers={"Authorization": "Bearer"})
    assert r.status_code == 401
    r = await gw.get("/api/auth/me", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401


async def test_large_body_streams_through(gw):
    big = b'{"username": "' + b"x" * 5_000_000 + b'", "password": "p"}'
    r = await gw.post("/api/auth/login", content=big, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500


async def test_web_client_never_escapes_its_folder(gw):
    for path in ("/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/assets/../../pyproject.toml"):
        r = await gw.get(path)
        assert "root:" not in r.text and "[project]" not in r.text


async def test_websocket_echo_needs_a_caller(gw, stack):
    name = unique("ws-user")
    token = await user_token(gw, stack, name)
    ws_url = stack.gateway_url.replace("http", "ws") + "/api/ws/echo"
    ticket = (await gw.post("/api/ws/tickets", headers=bearer(token))).json()["ticket"]
    async with websockets.connect(f"{ws_url}?ticket={ticket}") as ws:
        await ws.send("hello")
        assert json.loads(await ws.recv()) == {"echo": "hello", "user": name}
    async with websockets.connect(ws_url, additional_headers=bearer(token)) as ws:
        await ws.send("again")
        assert json.loads(await ws.recv())["echo"] == "again"
    key = (await gw.post("/api/auth/api-keys", json={"name": "ws"}, headers=bearer(token))).json()["key"]
    async with websockets.connect(ws_url, additional_headers=bearer(key)) as ws:
        await ws.send("key")
        assert json.loads(await ws.recv())["user"] == name
    for bad in ("", "?token=forged", f"?token={token}", f"?token={key}", f"?ticket={ticket}"):
        with pytest.raises(websockets.exceptions.WebSocketException):
            async with websockets.connect(ws_url + bad) as ws:
                await ws.send("x")
                await ws.recv()


async def test_unreachable_service_is_503_then_recovers(gw, stack):
    stack.services["registry"].stop()
    r = await gw.get("/api/models")
    assert r.status_code == 503 and r.json()["error"]["code"] == "service_unavailable"
    stack.restart("registry")
    assert (await gw.get("/api/models")).status_code != 503


async def test_sigterm_stops_a_service_cleanly(stack):
    service = stack.services["datasets"]
    service.stop()
    # uvicorn finishes the lifespan (drain NATS, close the pool), then re-raises the signal.
    assert service.process.returncode in (0, -15)
    assert "datasets stopped: bus drained, pool closed" in service.log_path.read_text()
    stack.restart("datasets")
