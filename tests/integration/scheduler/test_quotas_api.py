"""/api/quotas with real Postgres: a user reads their own limits and use, an admin reads and sets anyone's
(null puts a limit back to the platform's default), everyone else is refused, bad values are 422 naming the field."""

from __future__ import annotations

import pytest

from tests.helpers import assert_error

pytestmark = pytest.mark.integration


async def test_users_read_their_own_limits_and_admins_set_them(scheduler, people, settings, pool):
    _, admin = people["fleet-admin"]
    owner_id, owner = people["fleet-owner"]
    other_id, other = people["fleet-other"]
    await pool.execute("DELETE FROM user_quotas WHERE user_id = $1", owner_id)

    mine = (await scheduler.get("/api/quotas/me", headers=owner)).json()
    assert mine["user_id"] == owner_id
    assert mine["max_deployments"] == settings.max_deployments and mine["max_queued"] == settings.max_queued_per_user
    assert mine["custom"] == {
        "max_deployments": None,
        "max_gpus": None,
        "max_queued": None,
        "max_priority": None,
        "max_run_h": None,
    }
    assert mine["jobs_queued"] == 0 and mine["gpus_held"] == 0

    # Only admins read or set someone's limits; a user cannot raise their own.
    assert_error(await scheduler.get(f"/api/quotas/{owner_id}", headers=other), 403)
    assert_error(await scheduler.put(f"/api/quotas/{owner_id}", json={"max_gpus": 64}, headers=owner), 403)
    assert_error(await scheduler.get("/api/quotas/me"), 401)

    r = await scheduler.put(f"/api/quotas/{owner_id}", json={"max_gpus": 2, "max_deployments": 3}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["max_gpus"] == 2 and r.json()["max_deployments"] == 3
    assert r.json()["custom"] == {
        "max_deployments": 3,
        "max_gpus": 2,
        "max_queued": None,
        "max_priority": None,
        "max_run_h": None,
    }
    assert r.json()["max_queued"] == settings.max_queued_per_user, "an unset limit keeps the default"
    assert (await scheduler.get("/api/quotas/me", headers=owner)).json()["max_gpus"] == 2
    assert (await scheduler.get(f"/api/quotas/{owner_id}", headers=admin)).json() == r.json()
    untouched = (await scheduler.get(f"/api/quotas/{other_id}", headers=admin)).json()
    assert untouched["custom"]["max_gpus"] is None, "one user's limits are theirs alone"

    # Every limit at once: leaving one out (or null) puts it back to the default.
    back = (await scheduler.put(f"/api/quotas/{owner_id}", json={"max_deployments": 3}, headers=admin)).json()
    assert back["custom"]["max_gpus"] is None and back["max_gpus"] == settings.max_gpus_per_user

    assert_error(await scheduler.put("/api/quotas/usr_nobody", json={}, headers=admin), 404)
    assert_error(await scheduler.get("/api/quotas/usr_nobody", headers=admin), 404)
    for body, field in (
        ({"max_gpus": -1}, "max_gpus"),
        ({"max_queued": 10**9}, "max_queued"),
        ({"max_deployments": "many"}, "max_deployments"),
        ({"max_cpus": 3}, "max_cpus"),
    ):
        assert_error(await scheduler.put(f"/api/quotas/{owner_id}", json=body, headers=admin), 422, field=field)
    assert (await scheduler.get(f"/api/quotas/{owner_id}", headers=admin)).json() == back, "a refusal changes nothing"
