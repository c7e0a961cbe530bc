"""Retries a client can trust: POSTs that create jobs and deployments take an Idempotency-Key (the same key gets the
same job, never a second one), and the gateway answers 503 "retry" only when a retry cannot run anything twice."""

import asyncio
import contextlib

import asyncpg
import pytest

from tests.helpers import assert_error

from .helpers import TRAIN, gpu_agent, login, unique

pytestmark = pytest.mark.e2e

# Accepted and left waiting: a GPU job, with only a drained stand-in GPU agent to make it placeable some day.
WAITING = {**TRAIN, "gpu_count": 1}


def keyed(headers: dict, key: str) -> dict:
    return {**headers, "Idempotency-Key": key}


async def jobs_of(db, username: str) -> list[str]:
    rows = await db.fetch(
        "SELECT j.id FROM jobs j JOIN users u ON u.id = j.owner_id WHERE u.username = $1 ORDER BY j.created_at",
        username,
    )
    return [r["id"] for r in rows]


@contextlib.asynccontextmanager
async def database(stack):
    db = await asyncpg.connect(stack.env["DATABASE_URL"])
    try:
        yield db
    finally:
        await db.close()


async def cancel_all(gw, headers: dict, job_ids: list[str]) -> None:
    for job_id in job_ids:
        await gw.post(f"/api/jobs/{job_id}/cancel", headers=headers)


async def test_the_same_key_gets_the_same_job(gw, stack, tiny_model):
    name, other_name = unique("idem"), unique("idem-other")
    headers, other = await login(gw, stack.invite_code, name), await login(gw, stack.invite_code, other_name)
    key = unique("submit")
    async with gpu_agent(gw, stack, "idem-box"), database(stack) as db:
        first = await gw.post("/api/jobs", json=WAITING, headers=keyed(headers, key))
        assert first.status_code == 201, first.text
        assert "idempotent-replayed" not in first.headers
        again = await gw.post("/api/jobs", json=dict(reversed(WAITING.items())), headers=keyed(headers, key))
        assert again.status_code == 201, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == first.content, "the first answer, byte for byte"
        assert await jobs_of(db, name) == [first.json()["id"]]

        changed = await gw.post("/api/jobs", json={**WAITING, "max_steps": 13}, headers=keyed(headers, key))
        assert_error(changed, 422, "idempotency_key_reused", "Idempotency-Key")
        elsewhere = await gw.post(
            "/api/evals", json={"kind": "eval", "model": "tiny-llama"}, headers=keyed(headers, key)
        )
        assert_error(elsewhere, 422, "idempotency_key_reused", "Idempotency-Key")

        theirs = await gw.post("/api/jobs", json=WAITING, headers=keyed(other, key))
        assert theirs.status_code == 201 and "idempotent-replayed" not in theirs.headers, theirs.text
        assert await jobs_of(db, other_name) == [theirs.json()["id"]] != [first.json()["id"]]

        for bad in ("x" * 256, "", "tab\there", "caf\u00e9"):
            r = await gw.post("/api/jobs", json=WAITING, headers={**headers, "Idempotency-Key": bad.encode("latin-1")})
            assert_error(r, 400, "invalid_idempotency_key", "Idempotency-Key")
        assert len(await jobs_of(db, name)) == 1
        await cancel_all(gw, headers, [first.json()["id"]])
        await cancel_all(gw, other, [theirs.json()["id"]])


async def test_keys_expire_after_a_day(gw, stack, tiny_model):
    name = unique("idem-old")
    headers, key = await login(gw, stack.invite_code, name), unique("submit")
    async with gpu_agent(gw, stack, "idem-box"), database(stack) as db:
        first = (await gw.post("/api/jobs", json=WAITING, headers=keyed(headers, key))).json()
        await db.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = $1", key)
        later = await gw.post("/api/jobs", json={**WAITING, "max_steps": 13}, headers=keyed(headers, key))
        assert later.status_code == 201 and later.json()["id"] != first["id"], later.text
        await cancel_all(gw, headers, await jobs_of(db, name))


async def test_concurrent_requests_with_one_key_make_one_job(gw, stack, tiny_model):
    name = unique("idem-burst")
    headers, key = await login(gw, stack.invite_code, name), unique("submit")
    async with gpu_agent(gw, stack, "idem-box"), database(stack) as db:
        answers = await asyncio.gather(
            *(gw.post("/api/jobs", json=WAITING, headers=keyed(headers, key)) for _ in range(8))
        )
        jobs = await jobs_of(db, name)
        assert len(jobs) == 1, jobs
        for r in answers:
            if r.status_code == 409:
                assert_error(r, 409, "idempotency_key_in_flight", "Idempotency-Key")
            else:
                assert r.status_code == 201 and r.json()["id"] == jobs[0], r.text
        await cancel_all(gw, headers, jobs)


async def test_a_repeated_deployment_is_the_same_one(gw, stack, tiny_model):
    headers, key = await login(gw, stack.invite_code, unique("idem-deployer")), unique("deploy")
    body = {"model": "tiny-llama", "gpu_count": 1, "generation": {"max_new_tokens": 8}}
    async with gpu_agent(gw, stack, "idem-box"):
        first = await gw.post("/api/deployments", json=body, headers=keyed(headers, key))
        assert first.status_code == 201, first.text
        # Without the key this is the user's second deployment: 409 deployment_limit.
        again = await gw.post("/api/deployments", json=body, headers=keyed(headers, key))
        assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true", again.text
        assert again.json()["id"] == first.json()["id"]
        page = (await gw.get("/api/deployments", headers=headers)).json()
        assert [d["id"] for d in page["items"]] == [first.json()["id"]]
        await gw.post(f"/api/deployments/{first.json()['id']}/stop", headers=headers)


async def held_at_the_answer(db, count: int) -> None:
    """Wait until `count` submits wait on the lock of job_progress, which a job's answer reads."""
    while (
        await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND query LIKE '%FROM job_progress WHERE job_id%'"
        )
        < count
    ):
        await asyncio.sleep(0.05)


async def test_a_submit_cut_off_by_a_dead_scheduler_is_retried_into_one_job(gw, stack, tiny_model):
    """The scheduler is killed while two submits are in flight (held where the answer is read): the keyed one may be
    retried (503), the other's outcome is unknown (502, not "retry"); while it is down, a submit gets 503 with
    Retry-After and nothing is stored; once it is back, the keyed retry gives exactly one job."""
    name, plain_name, late_name = unique("idem-crash"), unique("idem-plain"), unique("idem-late")
    headers, plain = await login(gw, stack.invite_code, name), await login(gw, stack.invite_code, plain_name)
    late, key = await login(gw, stack.invite_code, late_name), unique("submit")
    async with gpu_agent(gw, stack, "idem-box"), database(stack) as db, database(stack) as holder:
        try:
            hold = holder.transaction()
            await hold.start()
            await holder.execute("LOCK TABLE job_progress IN ACCESS EXCLUSIVE MODE")
            cut = asyncio.create_task(gw.post("/api/jobs", json=WAITING, headers=keyed(headers, key)))
            unkeyed = asyncio.create_task(gw.post("/api/jobs", json=WAITING, headers=plain))
            await asyncio.wait_for(held_at_the_answer(db, 2), 30)
            await asyncio.to_thread(stack.kill, "scheduler")
            retry = await cut
            assert_error(retry, 503, "service_unavailable")
            assert retry.headers["retry-after"]
            assert_error(await unkeyed, 502, "outcome_unknown")
            await hold.rollback()

            down = await gw.post("/api/jobs", json=WAITING, headers=late)
            assert_error(down, 503, "service_unavailable")
            assert down.headers["retry-after"]
        finally:
            await asyncio.to_thread(stack.start, "scheduler")
        assert await jobs_of(db, late_name) == []

        while (again := await gw.post("/api/jobs", json=WAITING, headers=keyed(headers, key))).status_code == 503:
            await asyncio.sleep(float(again.headers["retry-after"]))
        assert again.status_code == 201, again.text
        jobs = await jobs_of(db, name)
        assert jobs == [again.json()["id"]], f"one job for one key, not {jobs}"
        replay = await gw.post("/api/jobs", json=WAITING, headers=keyed(headers, key))
        assert replay.headers["idempotent-replayed"] == "true" and replay.json()["id"] == jobs[0]
        await cancel_all(gw, headers, jobs)
        await cancel_all(gw, plain, await jobs_of(db, plain_name))


async def submit_until_answered(gw, headers: dict, body: dict) -> tuple[dict, list[int]]:
    """Submit with `headers` (an Idempotency-Key among them) until the answer is not a 503, as a client should;
    returns the final answer's body and every status seen."""
    seen = []
    while True:
        r = await gw.post("/api/jobs", json=body, headers=headers)
        seen.append(r.status_code)
        if r.status_code != 503:
            assert r.status_code == 201, r.text
            return r.json(), seen
        await asyncio.sleep(float(r.headers["retry-after"]))


async def test_a_burst_cut_by_a_scheduler_crash_makes_one_job_per_key(gw, stack, tiny_model):
    """The issue's case: the scheduler killed during a burst of 20 keyed submits, each retried on 503 until it is
    answered: every key has exactly one job, the one its answer names."""
    name = unique("idem-burst20")
    headers = await login(gw, stack.invite_code, name)
    keys = [unique(f"burst-{n}") for n in range(20)]
    async with gpu_agent(gw, stack, "idem-box"), database(stack) as db:
        try:
            clients = [
                asyncio.create_task(submit_until_answered(gw, keyed(headers, key), {**WAITING, "max_steps": 10 + n}))
                for n, key in enumerate(keys)
            ]
            await eventually_stored(db, name, 3)
            await asyncio.to_thread(stack.kill, "scheduler")
        finally:
            await asyncio.to_thread(stack.start, "scheduler")
        answers = await asyncio.gather(*clients)
        jobs = await jobs_of(db, name)
        assert sorted(jobs) == sorted(answer["id"] for answer, _ in answers), "one job per key, none unanswered"
        cut = sum(503 in seen for _, seen in answers)
        print(f"burst of 20: {cut} submits answered 503 and retried, {len(jobs)} jobs")
        await cancel_all(gw, headers, jobs)


async def eventually_stored(db, username: str, count: int) -> None:
    while len(await jobs_of(db, username)) < count:
        await asyncio.sleep(0.005)
