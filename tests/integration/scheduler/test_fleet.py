"""The fleet with real NATS, Postgres and agents as processes: registration, offline, removal, drain, placement
of two jobs on a two-GPU agent, the metrics and GPU series routes, the user's and the admin's views."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import assert_error, eventually

from .helpers import insert_gpu_job, job_row

pytestmark = pytest.mark.integration

BIG_GPU_MB = 81_920  # only the agent of the placement test has GPUs this large


async def agent_view(scheduler, headers, agent_id: str) -> dict | None:
    agents = (await scheduler.get("/api/agents", headers=headers)).json()["agents"]
    return next((a for a in agents if a["id"] == agent_id), None)


async def test_an_unknown_agent_registers_goes_offline_and_is_removed(scheduler, start_agent, people):
    admin = people["fleet-admin"][1]
    agent = start_agent("fleet-lost", gpus=2)
    seen = await eventually(lambda: agent_view(scheduler, admin, "fleet-lost"))
    assert seen["state"] == "online" and seen["runtime"] == "process" and seen["version"]
    assert [g["index"] for g in seen["gpus"]] == [0, 1] and seen["gpus"][0]["name"] == "Simulated GPU"
    assert seen["memory_total_mb"] > 0 and seen["hostname"]

    agent.process.kill()  # lost, not stopped: no goodbye
    agent.process.wait()

    async def offline():
        view = await agent_view(scheduler, admin, "fleet-lost")
        return view if view and view["state"] == "offline" and view["offline_since"] else None

    await eventually(offline, timeout=10)  # and the sweep wrote when it went silent

    async def removed():
        return await agent_view(scheduler, admin, "fleet-lost") is None

    await eventually(removed, timeout=15)


async def test_two_jobs_at_once_on_a_two_gpu_agent_and_drain(scheduler, start_agent, people, pool, tmp_path):
    admin = people["fleet-admin"][1]
    owner_id = people["fleet-owner"][0]
    start_agent("fleet-gpu", gpus=2, gpu_memory_mb=BIG_GPU_MB)
    await eventually(lambda: agent_view(scheduler, admin, "fleet-gpu"))

    first, second = [await insert_gpu_job(pool, owner_id, tmp_path) for _ in range(2)]

    async def both_running():
        rows = [await job_row(pool, j) for j in (first, second)]
        return rows if all(r["state"] == "running" for r in rows) else None

    rows = await eventually(both_running, timeout=20)
    assert {r["agent_id"] for r in rows} == {"fleet-gpu"}
    assert sorted(r["gpu_ids"][0] for r in rows) == [0, 1], "each job has a GPU of its own"
    busy = await agent_view(scheduler, admin, "fleet-gpu")
    assert {g["job_id"] for g in busy["gpus"]} == {first, second}

    r = await scheduler.post("/api/agents/fleet-gpu/drain", headers=admin)
    assert r.status_code == 200 and r.json()["state"] == "draining"
    third = await insert_gpu_job(pool, owner_id, tmp_path)

    async def finished():
        rows = [await job_row(pool, j) for j in (first, second)]
        return all(r["state"] == "succeeded" for r in rows)

    await eventually(finished, timeout=30)  # running work finishes on a draining agent
    await asyncio.sleep(3)  # several dispatch passes with free GPUs
    assert (await job_row(pool, third))["state"] == "pending", "nothing new goes to a draining agent"

    r = await scheduler.post("/api/agents/fleet-gpu/undrain", headers=admin)
    assert r.status_code == 200 and r.json()["state"] == "online"

    async def placed():
        return (await job_row(pool, third))["state"] in ("dispatched", "running", "succeeded")

    await eventually(placed, timeout=15)

    # The history: the agent's own series, and the owner's view of the GPU their job held.
    start = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    metrics = (
        await scheduler.get("/api/agents/fleet-gpu/metrics", params={"from": start, "step": 1}, headers=admin)
    ).json()
    assert metrics["step_s"] == 1 and metrics["host"] and metrics["host"][0]["memory_total_mb"] > 0
    assert [g["index"] for g in metrics["gpus"]] == [0, 1]
    assert metrics["gpus"][0]["points"][0]["memory_total_mb"] == BIG_GPU_MB

    owner = people["fleet-owner"][1]
    series = (await scheduler.get(f"/api/jobs/{first}/gpu", params={"step": 1}, headers=owner)).json()
    held = (await job_row(pool, first))["gpu_ids"]
    assert series["gpu_ids"] == held and [g["index"] for g in series["gpus"]] == held
    assert series["gpus"][0]["points"], "samples were taken while the job ran"
    assert_error(await scheduler.get(f"/api/jobs/{first}/gpu", headers=people["fleet-other"][1]), 404, "not_found")
    assert (await scheduler.get(f"/api/jobs/{first}/gpu", headers=admin)).status_code == 200


async def test_users_see_a_summary_admins_see_every_agent(scheduler, start_agent, people):
    start_agent("fleet-view", gpus=2)
    admin, user = people["fleet-admin"][1], people["fleet-owner"][1]
    await eventually(lambda: agent_view(scheduler, admin, "fleet-view"))
    hostname = (await agent_view(scheduler, admin, "fleet-view"))["hostname"]

    r = await scheduler.get("/api/agents", headers=user)
    assert r.status_code == 200
    body = r.json()
    assert body["agents"] is None and "fleet-view" not in r.text and hostname not in r.text
    simulated = [g for g in body["summary"]["gpus"] if g["name"] == "Simulated GPU" and g["memory_total_mb"] == 24576]
    assert (
        simulated
        and simulated[0]["total"] >= 2
        and simulated[0]["free"] + simulated[0]["busy"] <= simulated[0]["total"]
    )
    assert body["summary"]["agents_online"] >= 1

    for method, path in (
        ("get", "/api/agents/fleet-view"),
        ("post", "/api/agents/fleet-view/drain"),
        ("post", "/api/agents/fleet-view/undrain"),
        ("get", "/api/agents/fleet-view/metrics"),
    ):
        assert_error(await getattr(scheduler, method)(path, headers=user), 403)
    assert_error(await scheduler.post("/api/agents/nobody/drain", headers=admin), 404, "not_found")
    assert_error(
        await scheduler.get("/api/agents/fleet-view/metrics", params={"step": 0}, headers=admin), 422, field="step"
    )
    assert_error(
        await scheduler.get(
            "/api/agents/fleet-view/metrics",
            headers=admin,
            params={"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        ),
        422,
        field="from",
    )
