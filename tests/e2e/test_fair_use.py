"""Fair use through the whole platform (issue 14, item 8): a user's own priority is capped by what an admin grants
(LLMCT_MAX_PRIORITY, 0, otherwise); an admin's own jobs may ask any."""

import pytest

from tests.helpers import assert_error

from .helpers import TRAIN, admin_token, login, unique

pytestmark = pytest.mark.e2e


async def test_a_users_priority_is_capped_by_what_an_admin_grants(gw, stack, tiny_model):
    headers = await login(gw, stack.invite_code, unique("pushy"))
    me = (await gw.get("/api/auth/me", headers=headers)).json()
    admin = {"Authorization": f"Bearer {await admin_token(gw, stack)}"}
    body = {**TRAIN, "max_steps": 1, "priority": 50}

    error = assert_error(
        await gw.post("/api/jobs", json=body, headers=headers), 422, "priority_not_granted", "priority"
    )
    assert "(0)" in error["message"], error
    deploy = {"model": "tiny-llama", "gpu_count": 0, "priority": 50}
    assert_error(await gw.post("/api/deployments", json=deploy, headers=headers), 422, "priority_not_granted")
    assert (await gw.post("/api/jobs", json={**body, "priority": 0}, headers=headers)).status_code == 201

    r = await gw.put(f"/api/quotas/{me['id']}", json={"max_priority": 50}, headers=admin)
    assert r.status_code == 200 and r.json()["max_priority"] == 50, r.text
    assert (await gw.post("/api/jobs", json=body, headers=headers)).status_code == 201
    refused = await gw.post("/api/jobs", json={**body, "priority": 51}, headers=headers)
    assert_error(refused, 422, "priority_not_granted", "priority")
    assert (await gw.post("/api/jobs", json={**body, "priority": 100}, headers=admin)).status_code == 201
