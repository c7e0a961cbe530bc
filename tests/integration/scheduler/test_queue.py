"""The queue with real NATS and Postgres: fair share between users, quotas with the reason a job waits, its
position, retry and resume, and the jobs of a lost agent (re-queued to another agent, which is a process)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from services.common import contracts
from services.common.bus import close_bus, connect_bus, ensure_streams
from services.common.security import new_id
from services.scheduler.jobs import queue, recovery, service
from tests.helpers import eventually

from .helpers import HUGE_GPU_MB, PRIORITY, agent_row, job_row, pending_job, user

pytestmark = pytest.mark.integration


@pytest.fixture
async def bus(nats_server, pool):
    nc = await connect_bus(nats_server.url, "queue-test")
    js = nc.jetstream()
    await ensure_streams(js)
    yield nc, js
    await close_bus(nc)
    await pool.execute("DELETE FROM agents WHERE hostname = 'queue-test'")  # no later test may place work there


async def used_gpu_hours(pool, owner_id: str, hours: float, tmp_path) -> None:
    """A finished one-GPU job of `hours` inside the fair-share window."""
    job_id = await pending_job(pool, owner_id, tmp_path, priority=-100)
    now = datetime.now(UTC)
    await pool.execute(
        "UPDATE jobs SET state = 'succeeded', started_at = $2, finished_at = $3 WHERE id = $1",
        job_id,
        now - timedelta(hours=hours + 0.1),
        now - timedelta(hours=0.1),
    )


async def test_fair_share_orders_users_by_recent_gpu_hours_after_priority(pool, bus, settings, tmp_path):
    nc, js = bus
    heavy, light, fresh = [await user(pool, n) for n in ("heavy", "light", "fresh")]
    await used_gpu_hours(pool, heavy, 10, tmp_path)
    await used_gpu_hours(pool, light, 2, tmp_path)
    jobs = {who: await pending_job(pool, who, tmp_path) for who in (heavy, light, fresh)}  # oldest: heavy's
    urgent = await pending_job(pool, heavy, tmp_path, priority=PRIORITY + 1)
    window = settings.fair_share_window_h
    assert await queue.gpu_hours(pool, heavy, window) == pytest.approx(10, rel=0.01)
    order = [await queue.position(pool, j, window) for j in (urgent, jobs[fresh], jobs[light], jobs[heavy])]
    assert order == sorted(order) and order[0] == 1, "priority, then the fewest GPU-hours, then age"

    await agent_row(pool, gpus=2)
    await service.dispatch_pending(pool, nc, js, settings)
    states = {j: (await job_row(pool, j))["state"] for j in (urgent, *jobs.values())}
    assert states[urgent] == states[jobs[fresh]] == "dispatched"
    assert states[jobs[light]] == states[jobs[heavy]] == "pending"
    waiting = await pool.fetchrow("SELECT wait_reason FROM jobs WHERE id = $1", jobs[light])
    assert "free GPU" in waiting["wait_reason"]
    assert await queue.position(pool, jobs[light], window) < await queue.position(pool, jobs[heavy], window)
    await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE id = ANY($1::text[])", [urgent, *jobs.values()])


async def test_a_gpu_quota_keeps_jobs_waiting_with_the_reason_and_a_queue_quota_refuses(pool, bus, settings, tmp_path):
    nc, js = bus
    owner = await user(pool, "quota")
    await pool.execute("INSERT INTO user_quotas (user_id, max_gpus, max_queued) VALUES ($1, 1, 2)", owner)
    first, second = [await pending_job(pool, owner, tmp_path) for _ in range(2)]
    await agent_row(pool, gpus=2)
    await service.dispatch_pending(pool, nc, js, settings)
    assert (await job_row(pool, first))["state"] == "dispatched"
    row = await pool.fetchrow("SELECT state, wait_reason FROM jobs WHERE id = $1", second)
    assert row["state"] == "pending" and "GPU quota" in row["wait_reason"] and "1 of 1" in row["wait_reason"]

    await pending_job(pool, owner, tmp_path)  # two queued now: the quota's limit
    with pytest.raises(Exception) as refused:
        await queue.check_queue_quota(pool, owner, settings)
    assert refused.value.status == 429 and refused.value.code == "queue_quota"

    await pool.execute("UPDATE jobs SET state = 'succeeded' WHERE id = $1", first)  # its GPU is free again
    await service.dispatch_pending(pool, nc, js, settings)
    row = await pool.fetchrow("SELECT state, wait_reason FROM jobs WHERE id = $1", second)
    assert row["state"] == "dispatched" and row["wait_reason"] is None
    await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE owner_id = $1 AND state <> 'succeeded'", owner)


TRAIN_STAGE = {
    "name": "train",
    "command": ["llamafactory-cli", "train"],
    "config_yaml": yaml.safe_dump({"stage": "sft", "output_dir": "x", "overwrite_output_dir": True}),
}


async def test_retry_and_resume(pool, bus, settings, tmp_path):
    from services.common.security import Principal

    nc, js = bus
    owner = await user(pool, "retrier")
    me = Principal(user_id=owner, username="retrier", role="user", via="token")
    job_id = await pending_job(pool, owner, tmp_path, stages=[TRAIN_STAGE])
    with pytest.raises(Exception) as early:
        await recovery.retry(pool, js, nc, settings, me, job_id, resume=False)
    assert early.value.status == 409 and "pending" in early.value.message

    await pool.execute(
        "UPDATE jobs SET state = 'failed', reason = 'exit_code', started_at = now(), "
        "finished_at = now(), progress = '{\"step\": 6}' WHERE id = $1",
        job_id,
    )
    await pool.execute(
        "INSERT INTO job_progress (job_id, step, total_steps, loss) VALUES ($1, 2, 10, 1.0), ($1, 6, 10, 0.5)", job_id
    )
    with pytest.raises(Exception) as none:
        await recovery.retry(pool, js, nc, settings, me, job_id, resume=True)
    assert none.value.code == "no_checkpoint"

    checkpoint = Path(tmp_path / job_id / "checkpoint-4")
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    (tmp_path / job_id / "checkpoint-8").mkdir()  # being written when the run died: no trainer_state.json
    await recovery.retry(pool, js, nc, settings, me, job_id, resume=True)
    row = await pool.fetchrow(
        "SELECT state, reason, stages, config, config_yaml, finished_at, progress FROM jobs WHERE id = $1", job_id
    )
    assert row["state"] == "pending" and row["reason"] == "resumed" and row["finished_at"] is None
    assert row["config"]["resume_from_checkpoint"] == str(checkpoint) and row["config"]["overwrite_output_dir"] is False
    assert f"resume_from_checkpoint: {checkpoint}" in row["stages"][0]["config_yaml"]
    steps = [r["step"] for r in await pool.fetch("SELECT step FROM job_progress WHERE job_id = $1", job_id)]
    assert steps == [2], "points after the checkpoint are run again"

    await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE id = $1", job_id)
    await recovery.retry(pool, js, nc, settings, me, job_id, resume=False)
    row = await pool.fetchrow("SELECT state, reason, config, progress FROM jobs WHERE id = $1", job_id)
    assert row["state"] == "pending" and row["reason"] == "retried" and row["progress"] is None
    assert "resume_from_checkpoint" not in row["config"] and row["config"]["overwrite_output_dir"] is True
    assert await pool.fetchval("SELECT count(*) FROM job_progress WHERE job_id = $1", job_id) == 0
    history = [
        r["reason"] for r in await pool.fetch("SELECT reason FROM job_events WHERE job_id = $1 ORDER BY id", job_id)
    ]
    assert "resumed" in history and history[-1] == "retried"

    other = Principal(user_id=await user(pool, "not-owner"), username="x", role="user", via="token")
    await pool.execute("UPDATE jobs SET state = 'failed' WHERE id = $1", job_id)
    with pytest.raises(Exception) as foreign:
        await recovery.retry(pool, js, nc, settings, other, job_id, resume=False)
    assert foreign.value.status == 404
    await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE id = $1", job_id)


async def test_jobs_of_an_offline_agent_are_requeued_while_retries_last(pool, bus, settings, tmp_path):
    nc, _ = bus
    owner = await user(pool, "lost")
    gone = await agent_row(pool, gpus=1)
    await pool.execute("UPDATE agents SET offline_since = now() WHERE id = $1", gone)
    train = await pending_job(pool, owner, tmp_path, stages=[TRAIN_STAGE])
    deploy = await pending_job(pool, owner, tmp_path, kind="deploy")
    await pool.execute(
        "UPDATE jobs SET state = 'running', agent_id = $2, gpu_ids = '{0}', started_at = now() "
        "WHERE id = ANY($1::text[])",
        [train, deploy],
        gone,
    )
    checkpoint = tmp_path / train / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")

    assert await recovery.requeue_lost(pool, nc) >= 1
    row = await pool.fetchrow(
        "SELECT state, reason, message, agent_id, requeues, config FROM jobs WHERE id = $1", train
    )
    assert (row["state"], row["reason"], row["agent_id"], row["requeues"]) == ("pending", "requeued", None, 1)
    assert "checkpoint-3" in row["message"] and row["config"]["resume_from_checkpoint"] == str(checkpoint)
    lost_deploy = await pool.fetchrow("SELECT state, reason FROM jobs WHERE id = $1", deploy)
    assert (lost_deploy["state"], lost_deploy["reason"]) == ("failed", "agent_lost")

    # Its one retry is used: losing the agent again fails it, saying why.
    await pool.execute("UPDATE jobs SET state = 'running', agent_id = $2 WHERE id = $1", train, gone)
    await recovery.requeue_lost(pool, nc)
    row = await pool.fetchrow("SELECT state, reason, message FROM jobs WHERE id = $1", train)
    assert (row["state"], row["reason"]) == ("failed", "agent_lost") and "no retries left" in row["message"]


async def test_a_killed_agents_job_finishes_on_another_agent(scheduler, start_agent, people, pool, tmp_path):
    owner_id, _ = people["fleet-owner"]
    first = start_agent(f"lost-{new_id('a')[-6:]}", gpus=1, gpu_memory_mb=HUGE_GPU_MB)
    job_id = await pending_job(pool, owner_id, tmp_path, priority=PRIORITY + 5)

    async def running():
        row = await job_row(pool, job_id)
        return row if row["state"] == "running" else None

    before = await eventually(running, timeout=30)
    first.process.kill()  # no goodbye: the agent just stops beating
    first.process.wait(10)
    second = start_agent(f"heir-{new_id('a')[-6:]}", gpus=1, gpu_memory_mb=HUGE_GPU_MB)

    async def finished():
        row = await pool.fetchrow("SELECT state, agent_id, requeues FROM jobs WHERE id = $1", job_id)
        return row if row["state"] in contracts.TERMINAL_JOB_STATES else None

    row = await eventually(finished, timeout=60)
    assert (row["state"], row["requeues"]) == ("succeeded", 1), row
    assert before["agent_id"] != row["agent_id"] and row["agent_id"].startswith("heir-")
    reasons = [
        r["reason"] for r in await pool.fetch("SELECT reason FROM job_events WHERE job_id = $1 ORDER BY id", job_id)
    ]
    assert reasons.count("started") == 2 and "requeued" in reasons
    second.stop()


async def test_a_dispatch_nats_does_not_take_goes_back_to_the_queue(pool, settings, tmp_path, monkeypatch):
    """JetStream refusing the dispatch (its stream has no leader while a NATS node is replaced; here: no DISPATCH
    stream at all, on a server of the test's own) is sent again for DISPATCH_SEND_S, then the job is pending again
    with its attempt unspent, instead of staying dispatched until a sweep counts it as a lost attempt."""
    from llmct.embedded import NatsServer, free_port

    server = NatsServer(port=free_port(), monitor_port=free_port(), store_dir=tmp_path / "js").start()
    nc = await connect_bus(server.url, "queue-unsent")
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        await js.delete_stream("DISPATCH")
        monkeypatch.setattr(service, "DISPATCH_SEND_S", 1.0)
        owner = await user(pool, "unsent")
        job = await pending_job(pool, owner, tmp_path, priority=PRIORITY + 50)
        await agent_row(pool, gpus=1)
        await service.dispatch_pending(pool, nc, js, settings)
        row = await pool.fetchrow("SELECT state, reason, agent_id, attempt, requeues FROM jobs WHERE id = $1", job)
        assert (row["state"], row["reason"], row["agent_id"], row["attempt"], row["requeues"]) == (
            "pending",
            "requeued",
            None,
            0,
            0,
        )
        history = await pool.fetch("SELECT state, message FROM job_events WHERE job_id = $1 ORDER BY at, id", job)
        assert [e["state"] for e in history][-2:] == ["dispatched", "pending"]
        assert "could not be sent" in history[-1]["message"]
        await pool.execute("UPDATE jobs SET state = 'cancelled' WHERE id = $1", job)
    finally:
        await close_bus(nc)
        server.stop()
        await pool.execute("DELETE FROM agents WHERE hostname = 'queue-test'")
