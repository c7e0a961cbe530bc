"""Cancel, restarts and the live feed, on real jobs with the real engine."""

import asyncio
import json

import asyncpg
import pytest
import websockets

from .helpers import TRAIN, bearer, gpu_agent, login, read_logs, unique, wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_cancel_a_running_job(gw, stack, tiny_model):
    headers = await login(gw, stack.invite_code, unique("canceller"))
    job = (await gw.post("/api/jobs", json={**TRAIN, "max_steps": 5000}, headers=headers)).json()
    token = headers["Authorization"].split()[1]
    ws_url = stack.gateway_url.replace("http", "ws") + f"/api/jobs/{job['id']}/logs"
    await read_logs(ws_url, token, until=lambda ls: any("'loss'" in line["text"] for line in ls))
    r = await gw.post(f"/api/jobs/{job['id']}/cancel", headers=headers)
    assert r.status_code == 202 and r.json()["state"] == "cancelling"
    done = await wait_for_state(gw, headers, job["id"], {"succeeded", "failed", "cancelled"}, timeout=60)
    assert done["state"] == "cancelled"
    assert "cancel_requested" in [h["reason"] for h in done["history"]]
    r = await gw.post(f"/api/jobs/{job['id']}/cancel", headers=headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "job_finished"


async def test_scheduler_restart_mid_job_loses_nothing(gw, stack, tiny_model):
    headers = await login(gw, stack.invite_code, unique("restarter"))
    job = (await gw.post("/api/jobs", json={**TRAIN, "max_steps": 30}, headers=headers)).json()
    await wait_for_state(gw, headers, job["id"], {"running"}, timeout=60)
    await asyncio.to_thread(stack.restart, "scheduler")
    done = await wait_for_state(gw, headers, job["id"], {"succeeded", "failed", "cancelled"})
    assert done["state"] == "succeeded", done["message"]
    assert [p["step"] for p in done["progress_series"]] == list(range(1, 31))


async def test_live_feed_of_own_jobs(gw, stack, tiny_model):
    headers = await login(gw, stack.invite_code, unique("feed-watcher"))
    other = await login(gw, stack.invite_code, unique("feed-other"))
    token = headers["Authorization"].split()[1]
    feed_url = stack.gateway_url.replace("http", "ws") + "/api/jobs/feed"
    async with websockets.connect(feed_url, additional_headers=bearer(token)) as feed:
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
    headers = await login(gw, stack.invite_code, unique("bad-config"))
    # Every override key is the engine's own (an unknown one is refused at submit): this one is refused by the
    # engine only, for what it asks together with the form (streaming needs max_steps).
    body = {k: v for k, v in TRAIN.items() if k != "max_steps"} | {"config_overrides": {"streaming": True}}
    job = (await gw.post("/api/jobs", json=body, headers=headers)).json()
    done = await wait_for_state(gw, headers, job["id"], {"succeeded", "failed", "cancelled"})
    assert done["state"] == "failed" and done["reason"] == "bad_config", (done["reason"], done["message"])
    assert "last log lines" in done["message"] and "max_steps" in done["message"]


async def test_log_viewer_resumes_across_a_gateway_restart(gw, stack, tiny_model):
    headers = await login(gw, stack.invite_code, unique("resumer"))
    job = (await gw.post("/api/jobs", json={**TRAIN, "max_steps": 40}, headers=headers)).json()
    token = headers["Authorization"].split()[1]
    ws_url = stack.gateway_url.replace("http", "ws") + f"/api/jobs/{job['id']}/logs"
    before = await read_logs(ws_url, token, until=lambda ls: any("'loss'" in line["text"] for line in ls))
    await asyncio.to_thread(stack.restart, "gateway")
    after = await read_logs(
        ws_url,
        token,
        after=f"{before[-1]['attempt']}.{before[-1]['seq']}",
        until=lambda ls: any("job succeeded" in line["text"] for line in ls),
    )
    seqs = [line["seq"] for line in before + after]
    assert seqs == list(range(1, len(seqs) + 1)), "no line lost or repeated across the restart"


async def test_job_list_pages_and_filters(gw, stack, tiny_model):
    headers = await login(gw, stack.invite_code, unique("pager"))
    ids = [(await gw.post("/api/jobs", json={**TRAIN, "max_steps": 1}, headers=headers)).json()["id"] for _ in range(3)]
    seen, cursor = [], None
    while True:
        page = (
            await gw.get("/api/jobs", headers=headers, params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        ).json()
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


RESUMED = "to resume from the exact training state"  # transformers' Trainer, skipping the batches already done


async def test_resume_a_cancelled_job_from_its_checkpoint_then_retry_it(gw, stack, tiny_model):
    headers = await login(gw, stack.invite_code, unique("resumer"))
    body = {**TRAIN, "max_steps": 5000, "save_steps": 3, "logging_steps": 1}
    job = (await gw.post("/api/jobs", json=body, headers=headers)).json()
    r = await gw.post(f"/api/jobs/{job['id']}/retry", headers=headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_rerunnable", "not while it is queued or runs"

    async def checkpointed() -> bool:
        detail = (await gw.get(f"/api/jobs/{job['id']}", headers=headers)).json()
        return (detail["progress"] or {}).get("step", 0) >= 4  # checkpoint-3 is written by then

    for _ in range(240):
        if await checkpointed():
            break
        await asyncio.sleep(0.5)
    await gw.post(f"/api/jobs/{job['id']}/cancel", headers=headers)
    await wait_for_state(gw, headers, job["id"], {"cancelled"}, timeout=60)

    r = await gw.post(f"/api/jobs/{job['id']}/resume", headers=headers)
    assert r.status_code == 202, r.text
    resumed = r.json()
    assert resumed["state"] in ("pending", "dispatched", "running") and resumed["reason"] in (
        "resumed",
        "placed",
        "started",
    )
    assert (
        "resume_from_checkpoint:" in resumed["config_yaml"]
        and "checkpoint-" in resumed["config"]["resume_from_checkpoint"]
    )
    running = await wait_for_state(gw, headers, job["id"], {"running", "failed", "succeeded"}, timeout=120)
    assert running["state"] != "failed", running["message"]
    for _ in range(180):  # the trainer picks up from the checkpoint, not from step 0
        log = (await gw.get(f"/api/jobs/{job['id']}/log", headers=headers)).text
        if RESUMED in log:
            break
        await asyncio.sleep(0.5)
    assert RESUMED in log, log[-3000:]
    await gw.post(f"/api/jobs/{job['id']}/cancel", headers=headers)
    await wait_for_state(gw, headers, job["id"], {"cancelled"}, timeout=60)

    r = await gw.post(f"/api/jobs/{job['id']}/retry", headers=headers)
    assert r.status_code == 202 and "resume_from_checkpoint" not in r.json()["config"], r.text
    assert [h["reason"] for h in r.json()["history"]][-1] in ("retried", "placed", "started")
    await gw.post(f"/api/jobs/{job['id']}/cancel", headers=headers)
    await wait_for_state(gw, headers, job["id"], {"cancelled"}, timeout=60)
    other = await login(gw, stack.invite_code, unique("resume-outsider"))
    assert (await gw.post(f"/api/jobs/{job['id']}/retry", headers=other)).status_code == 404

    # Three attempts, each numbering its lines from 1: a viewer gets every line of each (issue 14: it lost the
    # second attempt's first lines), attempts told apart on the socket and in the file.
    token = headers["Authorization"].split()[1]
    ws_url = stack.gateway_url.replace("http", "ws") + f"/api/jobs/{job['id']}/logs"
    lines = await read_logs(
        ws_url, token, timeout=60, until=lambda ls: sum(line["text"].startswith("job cancelled") for line in ls) == 3
    )
    attempts = sorted({line["attempt"] for line in lines})
    assert len(attempts) == 3, attempts
    for attempt in attempts:
        seqs = [line["seq"] for line in lines if line["attempt"] == attempt]
        assert seqs == list(range(1, len(seqs) + 1)), f"attempt {attempt} skipped or repeated lines"
        assert [line["text"] for line in lines if line["attempt"] == attempt][0].startswith(f"attempt {attempt}: ")
    log = (await gw.get(f"/api/jobs/{job['id']}/log", headers=headers)).text
    assert [f"[platform] attempt {a}: " in log for a in attempts] == [True] * 3
    assert log.count("\n") == len(lines), "the file and the socket hold the same lines"
    second = await read_logs(ws_url, token, after=f"{attempts[1]}.2", timeout=60, until=lambda ls: len(ls) > 0)
    assert (second[0]["attempt"], second[0]["seq"]) == (attempts[1], 3), "resumes within an attempt"


async def test_a_log_viewer_is_told_when_the_jobs_agent_is_lost(gw, stack, tiny_model):
    headers = await login(gw, stack.invite_code, unique("orphan-viewer"))
    token = headers["Authorization"].split()[1]
    async with gpu_agent(gw, stack, "ghost-gpu-box") as ghost:  # drained: the job waits, never placed
        job = (await gw.post("/api/jobs", json={**TRAIN, "gpu_count": 1}, headers=headers)).json()
        ws_url = stack.gateway_url.replace("http", "ws") + f"/api/jobs/{job['id']}/logs"
        async with websockets.connect(ws_url, additional_headers=bearer(token)) as viewer:
            await asyncio.sleep(0.5)  # the socket follows the job now
            # As if it ran on an agent that then vanished: the scheduler's sweep finds it lost and re-queues it.
            db = await asyncpg.connect(stack.env["DATABASE_URL"])
            try:
                await db.execute(
                    "UPDATE jobs SET state = 'running', agent_id = $2, attempt = 1, started_at = now() WHERE id = $1",
                    job["id"],
                    f"{ghost}-gone",
                )
            finally:
                await db.close()
            async with asyncio.timeout(60):
                notice = json.loads(await viewer.recv())["notice"]
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await viewer.recv()
        assert notice["reason"] == "requeued" and "went offline" in notice["message"], notice
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4410
        await gw.post(f"/api/jobs/{job['id']}/cancel", headers=headers)


async def test_a_pending_job_shows_its_position_and_why_it_waits(gw, stack, tiny_model):
    headers = await login(gw, stack.invite_code, unique("waiter"))
    # A GPU agent of this test's own, registered but drained: the GPU job is taken (some agent could hold it) and
    # waits, as no online agent has a free GPU (the stack's own agent has none).
    async with gpu_agent(gw, stack, "waiter-gpu-box"):
        r = await gw.post(
            "/api/jobs", json={**TRAIN, "gpu_count": 1, "per_device_train_batch_size": 1}, headers=headers
        )
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        try:
            for _ in range(40):
                detail = (await gw.get(f"/api/jobs/{job_id}", headers=headers)).json()
                if detail["wait_reason"]:
                    break
                await asyncio.sleep(0.25)
            assert detail["state"] == "pending" and detail["queue_position"] >= 1
            assert "GPU" in detail["wait_reason"], detail["wait_reason"]
            listed = (await gw.get("/api/jobs", headers=headers, params={"state": "pending"})).json()["items"]
            assert [(j["id"], j["queue_position"] >= 1, j["wait_reason"]) for j in listed] == [
                (job_id, True, detail["wait_reason"])
            ], "the list says the same as the job's page"
        finally:
            await gw.post(f"/api/jobs/{job_id}/cancel", headers=headers)
