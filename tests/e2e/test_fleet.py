"""The fleet through the gateway: the local agent registered itself; users see capacity, admins see hosts."""

import pytest

from tests.e2e.conftest import E2E_AGENT
from tests.e2e.helpers import admin_token, login
from tests.helpers import eventually, unique

pytestmark = pytest.mark.e2e


async def test_the_agent_is_registered_and_users_see_only_a_summary(gw, stack):
    admin = {"Authorization": f"Bearer {await admin_token(gw, stack)}"}

    async def registered():
        agents = (await gw.get("/api/agents", headers=admin)).json()["agents"]
        return next((a for a in agents if a["id"] == E2E_AGENT and a["state"] == "online"), None)

    agent = await eventually(registered)
    assert agent["runtime"] == "process" and agent["cpu_slots"] == 2 and agent["hostname"]

    user = await login(gw, stack.invite_code, unique("fleet-viewer"))
    r = await gw.get("/api/agents", headers=user)
    assert r.status_code == 200 and r.json()["agents"] is None
    assert r.json()["summary"]["cpu_slots_total"] >= 2
    assert E2E_AGENT not in r.text and agent["hostname"] not in r.text
    assert (await gw.get(f"/api/agents/{E2E_AGENT}", headers=user)).status_code == 403

    async def sampled():
        r = await gw.get(f"/api/agents/{E2E_AGENT}/metrics", headers=admin)
        assert r.status_code == 200, r.text
        return r.json()["host"]

    await eventually(sampled, timeout=30)  # one raw sample per LLMCT_METRICS_SAMPLE_S (10 s)
