"""Cancel, restarts and the live feed, on real jobs with the real engine."""

import asyncio
import json

import pytest
import websockets

from .helpers import login, read_logs, wait_for_state
from .test_training import TRAIN

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_cancel_a_running_job(gw, stack, tiny_model):
    headers = await login(gw, stack.invite_code, "canceller")
    job = (await gw.post("/api/jobs", json={**TRAIN, "max_steps": 5000}, headers=headers)).json()
    token = headers["Authorization"].split()[1]
    ws_url = stack.gateway_url.replace("http", "ws") + f"/api/jobs/{job['id']}/logs"
    await read_logs(ws_url, token, until=lambda ls: any("'loss'" in l["text"] for l in ls))
    r = await gw.post(f"/api/jobs/{job['id']}/cancel", headers=headers)
    assert r.status_code == 202 and r.json()["state"] == "cancelling"
    done = await wait_for_state(gw, headers, job["id"], {"succeeded", "failed", "cancelled"}, timeout=60)
    assert done["state"] == "cancelled"
    assert "cancel_requested" in [h["reason"] for h in done["history"]]
    r = await gw.post(f"/api/jobs/{job['id']}/cancel", headers=headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "job_finished"


async def test_scheduler_restart_mid_job_loses_nothing(gw, stack, tiny_model):
    headers = await login(gw, stack.invite_code, "restarter")
    job = (await gw.post("/api/jobs", json={**TRAIN, "max_steps": 30}, headers=headers)).json()
    await wait_for_state(gw, headers, job["id"], {"running"}, timeout=60)
    await asyncio.to_thread(stack.restart, "scheduler")
    done = await wait_for_state(gw, headers, job["id"], {"succeeded", "failed", "cancelled"})
    assert done["state"] == "succeeded", done["message"]
    assert [p["step"] for p in done["progress_series"]] == list(range(1, 31))


async def test_live_feed_of_own_jobs(gw, stack, tiny_model):
    headers = await login(gw, stack.invite_code, "feed-watcher")
    other = await login(gw, stack.invite_code, "feed-other")
    token = headers["Authorization"].split()[1]
    feed_url = stack.gateway_url.replace("http", "ws") + f"/api/jobs/feed?token={token}"
    async with websockets.connect(feed_url) as feed:
        await asyncio.sleep(0.3)
        theirs = (await gw.post("/api/jobs", json={**TRAIN, "max_steps": 2}, headers=other)).json()
        mine = (await gw.post("/api/jobs", json={**TRAIN, "max_steps": 2}, headers=headers)).json()
        seen = []
        async with asyncio.timeout(180):
            while "succeeded" not in seen:
                change = json.loads(await feed.recv())
                assert change["job_id"] == mine["id"], "another user's job leaked into the feed"
                seen.append(change["state"])
    assert seen[:2] == ["dispatched", "running"] and seen[-1] == "succeeded"
    await wait_for_state(gw, other, theirs["id"], {"succeeded", "failed"})


async def test_engine_refusing_the_config_says_why(gw, stack, tiny_model):
    headers = await login(gw, stack.invite_code, "bad-config")
    body = {**TRAIN, "max_steps": 2, "config_overrides": {"no_such_engine_option": 3}}
    job = (await gw.post("/api/jobs", json=body, headers=headers)).json()
    done = await wait_for_state(gw, headers, job["id"], {"succeeded", "failed", "cancelled"})
    assert done["state"] == "failed" and done["reason"] == "bad_config", (done["reason"], done["message"])
    assert "last log lines" in done["message"] and "no_such_engine_option" in done["message"]


async def test_log_viewer_resumes_across_a_gateway_restart(gw, stack, tiny_model):
    headers = await login(gw, stack.invite_code, "resumer")
    job = (await gw.post("/api/jobs", json={**TRAIN, "max_steps": 40}, headers=headers)).json()
    token = headers["Authorization"].split()[1]
    ws_url = stack.gateway_url.replace("http", "ws") + f"/api/jobs/{job['id']}/logs"
    before = await read_logs(ws_url, token, until=lambda ls: any("'loss'" in l["text"] for l in ls))
    await asyncio.to_thread(stack.restart, "gateway")
    after = await read_logs(ws_url, token, after=before[-1]["seq"],
                            until=lambda ls: any("job succeeded" in l["text"] for l in ls))
    seqs = [l["seq"] for l in before + after]
    assert seqs == list(range(1, len(seqs) + 1)), "no line lost or repeated across the restart"


async def test_job_list_pages_and_filters(gw, stack, tiny_model):
    headers = await login(gw, stack.invite_code, "pager")
    ids = [(await gw.post("/api/jobs", json={**TRAIN, "max_steps": 1}, headers=headers)).json()["id"] for _ in range(3)]
    seen, cursor = [], None
    while True:
        page = (await gw.get("/api/jobs", headers=headers, params={"limit": 2, **({"cursor": cursor} if cursor else {})})).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids)), "newest first, every job once"
    r = await gw.get("/api/jobs", headers=headers, params={"kind": "export"})
    assert r.status_code == 200 and r.json()["items"] == []
    assert (await gw.get("/api/jobs", headers=headers, params={"state": "weird"})).status_code == 422
    assert (await gw.get("/api/jobs", headers=headers, params={"cursor": "garbage"})).status_code == 422
    for job_id in ids:
        await wait_for_state(gw, headers, job_id, {"succeeded", "failed"})
