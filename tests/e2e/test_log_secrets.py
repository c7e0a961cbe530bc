"""No log line carries a secret (issue 14, item 6): whatever a client puts in a URL or header, the services' logs
(uvicorn's access and WebSocket lines included) show it redacted."""

from __future__ import annotations

import pytest
import websockets

from tests.helpers import eventually

from .helpers import bearer, login, unique

pytestmark = pytest.mark.e2e


async def test_tokens_keys_and_tickets_never_reach_the_logs(gw, stack):
    headers = await login(gw, stack.invite_code, unique("log-secrets"))
    token = headers["Authorization"].split()[1]
    key = (await gw.post("/api/auth/api-keys", json={"name": "logged"}, headers=headers)).json()["key"]
    ticket = (await gw.post("/api/ws/tickets", headers=headers)).json()["ticket"]
    ws_url = stack.gateway_url.replace("http", "ws") + "/api/ws/echo"

    async with websockets.connect(f"{ws_url}?ticket={ticket}") as ws:
        await ws.send("x")
        await ws.recv()
    for query in (f"?token={token}", f"?api_key={key}"):
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(ws_url + query):
                pass
    await gw.get(f"/api/jobs?token={token}", headers=bearer(key))  # forwarded: logged by gateway and scheduler
    await gw.get(f"/api/models?key={key}&access_token={token}")
    await gw.get(f"/api/auth/me?ticket={ticket}", headers=headers)

    logs = {name: service.log_path for name, service in stack.services.items()}

    async def logged() -> str | None:
        text = "\n".join(path.read_text(errors="replace") for path in logs.values())
        return text if "/api/auth/me?ticket=[redacted]" in text else None

    text = await eventually(logged, timeout=10)
    assert "/api/ws/echo?ticket=[redacted]" in text  # the access lines are there, their secrets are not
    for secret in (token, key, ticket, token.split(".")[2]):
        assert secret not in text
