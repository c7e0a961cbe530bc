"""Users' secrets (services/scheduler/usersecrets/): the scheduler in-process, real Postgres and NATS. A value goes
in through PUT /api/secrets/{name} and never comes out of the API (nor into its logs); it is stored encrypted and
bound to its owner and name; only the agent running a job's current attempt gets the values the job lists."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import pytest

from services.auth.store import insert_api_key
from services.common import contracts
from services.common.contracts import JobSecrets, JobSecretsAsked, Subjects
from services.common.errors import ApiError
from services.common.requests import ask
from services.common.security import new_api_key, new_id
from services.common.usersecrets import SECRET_NAMES
from services.scheduler.usersecrets.service import unset_for_job
from tests.helpers import assert_error, eventually, unique

from .helpers import connect_as, job_on, move

pytestmark = pytest.mark.integration

WANDB = "/api/secrets/wandb_api_key"


@pytest.fixture
async def online(scheduler, bus, pool):
    """online(agent_id): the agent beats (on the services' connection) until the test ends, so the fleet sweep does
    not give its jobs back to the queue while a test asks for their secrets."""
    tasks = []

    async def start(agent_id: str) -> str:
        async def beat_forever():
            while True:
                beat = contracts.AgentHeartbeat(agent_id=agent_id, hostname="secrets-test", sent_at=datetime.now(UTC))
                await bus.publish(Subjects.agent_heartbeat(agent_id), contracts.encode(beat))
                await asyncio.sleep(0.3)

        tasks.append(asyncio.create_task(beat_forever()))

        async def registered():
            return await pool.fetchval("SELECT offline_since IS NULL FROM agents WHERE id = $1", agent_id)

        await eventually(registered)
        return agent_id

    yield start
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def value() -> str:
    return unique("wandb-secret-value") + "-Zq9"


async def ask_secrets(nc, agent_id: str, job_id: str, attempt: int, names: list[str], timeout: float = 5.0):
    asked = JobSecretsAsked(job_id=job_id, attempt=attempt, names=names)
    return await ask(nc, Subjects.job_secrets(agent_id), asked, JobSecrets, owner="scheduler", timeout=timeout)


async def job_with_secrets(pool, owner_id: str, tmp_path, agent_id: str, names: list[str], state="running") -> str:
    job_id = await job_on(pool, owner_id, tmp_path, agent_id, 1, state)
    await pool.execute("UPDATE jobs SET secret_names = $2 WHERE id = $1", job_id, names)
    return job_id


async def test_a_secret_is_set_listed_replaced_and_deleted_and_never_shown(scheduler, people, caplog):
    caplog.set_level(logging.DEBUG)
    _, headers = people["fleet-owner"]
    secret, other = value(), value()
    put = await scheduler.put(WANDB, json={"value": secret}, headers=headers)
    assert put.status_code == 200, put.text
    assert put.json()["set"] is True and put.json()["env"] == "WANDB_API_KEY"
    listed = await scheduler.get("/api/secrets", headers=headers)
    assert listed.status_code == 200
    items = {item["name"]: item for item in listed.json()["items"]}
    assert tuple(items) == SECRET_NAMES, "the whole catalogue, in its order"
    assert items["wandb_api_key"]["set"] and not items["mlflow_tracking_token"]["set"]
    first = items["wandb_api_key"]["updated_at"]

    again = await scheduler.put(WANDB, json={"value": other}, headers=headers)
    assert again.status_code == 200 and again.json()["updated_at"] > first
    assert again.json()["created_at"] == put.json()["created_at"]

    assert (await scheduler.delete(WANDB, headers=headers)).status_code == 204
    assert_error(await scheduler.delete(WANDB, headers=headers), 404, "not_found")
    listed = await scheduler.get("/api/secrets", headers=headers)
    assert not any(item["set"] for item in listed.json()["items"])
    for text in (put.text, again.text, listed.text, caplog.text):
        assert secret not in text and other not in text and secret[-8:] not in text


async def test_names_outside_the_catalogue_and_bad_values_are_refused_without_repeating_them(scheduler, people, caplog):
    caplog.set_level(logging.DEBUG)
    _, headers = people["fleet-owner"]
    for name in ("LD_PRELOAD", "PYTHONPATH", "WANDB_API_KEY", "hf_token"):
        error = assert_error(await scheduler.put(f"/api/secrets/{name}", json={"value": "x"}, headers=headers), 422)
        assert error["code"] == "unknown_secret" and error["field"] == "name"
        assert all(known in error["message"] for known in SECRET_NAMES), error
    assert_error(await scheduler.delete("/api/secrets/LD_PRELOAD", headers=headers), 422, "unknown_secret")

    secret = value()
    refused = {
        "secret_too_long": secret * (4096 // len(secret) + 1),
        "secret_not_text": secret + "\n",
        "empty_secret": "",
    }
    for code, bad in refused.items():
        answer = await scheduler.put(WANDB, json={"value": bad}, headers=headers)
        assert assert_error(answer, 422, code, "value") and secret not in answer.text
    exactly = "k" * 4096
    assert (await scheduler.put(WANDB, json={"value": exactly}, headers=headers)).status_code == 200
    for body in ({"value": [secret]}, {"value": secret, "also": secret}, {"secret": secret}):
        answer = await scheduler.put(WANDB, json=body, headers=headers)
        assert answer.status_code in (400, 422) and secret not in answer.text, answer.text
    assert secret not in caplog.text and exactly not in caplog.text
    await scheduler.delete(WANDB, headers=headers)


async def test_a_submit_can_tell_which_secrets_a_job_needs_are_unset(scheduler, people, pool):
    owner_id, owner = people["fleet-owner"]
    await scheduler.put("/api/secrets/mlflow_tracking_token", json={"value": value()}, headers=owner)
    wanted = ["MLFLOW_TRACKING_TOKEN", "WANDB_API_KEY"]
    assert await unset_for_job(pool, owner_id, wanted) == ["W&B API key not set: PUT /api/secrets/wandb_api_key"]
    assert await unset_for_job(pool, owner_id, ["MLFLOW_TRACKING_TOKEN"]) == []
    await scheduler.delete("/api/secrets/mlflow_tracking_token", headers=owner)


async def test_another_user_neither_sees_nor_deletes_a_secret(scheduler, people, pool):
    owner_id, owner = people["fleet-owner"]
    _, other = people["fleet-other"]
    _, admin = people["fleet-admin"]
    await scheduler.put("/api/secrets/mlflow_tracking_token", json={"value": value()}, headers=owner)
    for headers in (other, admin):
        items = (await scheduler.get("/api/secrets", headers=headers)).json()["items"]
        assert not any(item["set"] for item in items if item["name"] == "mlflow_tracking_token")
        assert_error(await scheduler.delete("/api/secrets/mlflow_tracking_token", headers=headers), 404)
    assert await pool.fetchval("SELECT count(*) FROM user_secrets WHERE user_id = $1", owner_id) == 1
    await scheduler.delete("/api/secrets/mlflow_tracking_token", headers=owner)


async def test_an_inference_key_may_not_use_secrets_and_a_read_only_key_only_lists(scheduler, people, pool):
    owner_id, _ = people["fleet-owner"]
    keys = {}
    for scope in ("inference", "read_only"):
        key, prefix, key_hash = new_api_key()
        await insert_api_key(
            pool,
            key_id=new_id("key"),
            user_id=owner_id,
            name=unique(scope),
            prefix=prefix,
            key_hash=key_hash,
            scope=scope,
            expires_at=None,
        )
        keys[scope] = {"Authorization": f"Bearer {key}"}
    assert_error(await scheduler.get("/api/secrets", headers=keys["inference"]), 403, "api_key_scope")
    assert_error(await scheduler.put(WANDB, json={"value": value()}, headers=keys["inference"]), 403, "api_key_scope")
    assert (await scheduler.get("/api/secrets", headers=keys["read_only"])).status_code == 200
    assert_error(await scheduler.put(WANDB, json={"value": value()}, headers=keys["read_only"]), 403)


async def test_the_database_holds_ciphertext_bound_to_its_owner(scheduler, people, pool, nats_server, online, tmp_path):
    owner_id, owner = people["fleet-owner"]
    other_id, _ = people["fleet-other"]
    secret = value()
    await scheduler.put(WANDB, json={"value": secret}, headers=owner)
    row = await pool.fetchrow("SELECT ciphertext, key_id FROM user_secrets WHERE user_id = $1", owner_id)
    assert secret.encode() not in row["ciphertext"] and len(row["ciphertext"]) >= len(secret) + 16
    # Someone with the database copies the row to another user, and under another name of the owner.
    await pool.execute(
        "INSERT INTO user_secrets (user_id, name, ciphertext, key_id) SELECT $2, name, ciphertext, key_id "
        "FROM user_secrets WHERE user_id = $1 AND name = 'wandb_api_key'",
        owner_id,
        other_id,
    )
    await pool.execute(
        "INSERT INTO user_secrets (user_id, name, ciphertext, key_id) SELECT user_id, 'mlflow_tracking_token', "
        "ciphertext, key_id FROM user_secrets WHERE user_id = $1 AND name = 'wandb_api_key'",
        owner_id,
    )
    agent_id = await online(unique("secrets-agent"))
    nc = await connect_as(nats_server, agent_id, [])
    try:
        theirs = await job_with_secrets(pool, other_id, tmp_path, agent_id, ["WANDB_API_KEY"])
        with pytest.raises(ApiError) as moved:
            await ask_secrets(nc, agent_id, theirs, 1, ["WANDB_API_KEY"])
        assert moved.value.status == 409 and moved.value.code == "secret_unreadable"
        assert secret not in moved.value.message
        renamed = await job_with_secrets(pool, owner_id, tmp_path, agent_id, ["MLFLOW_TRACKING_TOKEN"])
        with pytest.raises(ApiError) as swapped:
            await ask_secrets(nc, agent_id, renamed, 1, ["MLFLOW_TRACKING_TOKEN"])
        assert swapped.value.code == "secret_unreadable"
        own = await job_with_secrets(pool, owner_id, tmp_path, agent_id, ["WANDB_API_KEY"])
        assert (await ask_secrets(nc, agent_id, own, 1, ["WANDB_API_KEY"])).env == {"WANDB_API_KEY": secret}
    finally:
        await nc.close()
        await pool.execute("DELETE FROM user_secrets WHERE user_id = ANY($1::text[])", [owner_id, other_id])


async def test_only_the_jobs_agent_gets_the_secrets_it_lists(scheduler, people, pool, nats_server, online, tmp_path):
    owner_id, owner = people["fleet-owner"]
    token, password = value(), value()
    await scheduler.put("/api/secrets/mlflow_tracking_token", json={"value": token}, headers=owner)
    await scheduler.put("/api/secrets/mlflow_tracking_password", json={"value": password}, headers=owner)
    mine, stranger = await online(unique("secrets-agent")), unique("secrets-stranger")
    errors: list[str] = []
    nc, other = await connect_as(nats_server, mine, errors), await connect_as(nats_server, stranger, errors)
    names = ["MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD"]
    try:
        job_id = await job_with_secrets(pool, owner_id, tmp_path, mine, names, state="dispatched")
        got = await ask_secrets(nc, mine, job_id, 1, names)
        assert got.env == {"MLFLOW_TRACKING_TOKEN": token, "MLFLOW_TRACKING_PASSWORD": password}

        async def refused(conn, agent_id: str, attempt: int, asked: list[str], status=403, job=job_id) -> ApiError:
            with pytest.raises(ApiError) as caught:
                await ask_secrets(conn, agent_id, job, attempt, asked, timeout=2.0)
            assert caught.value.status == status, caught.value.message
            assert token not in caught.value.message and password not in caught.value.message
            return caught.value

        await refused(other, stranger, 1, names)  # another agent, on its own subject
        await refused(other, mine, 1, names, status=503)  # …or on this agent's: NATS refuses the publish
        assert any("permissions violation" in error for error in errors), errors
        await refused(nc, mine, 2, names)  # an attempt the job is not at
        await refused(nc, mine, 1, ["WANDB_API_KEY"])  # a variable the job was not given
        assert (await refused(nc, mine, 1, ["LD_PRELOAD"], status=422)).code == "unknown_secret"
        await move(pool, job_id, mine, 2, "running")
        await refused(nc, mine, 1, names)  # the attempt before
        await pool.execute("UPDATE jobs SET state = 'succeeded' WHERE id = $1", job_id)
        await refused(nc, mine, 2, names)  # a job no longer running
        await move(pool, job_id, None, 2, "pending")
        await refused(nc, mine, 2, names)

        wanting = await job_with_secrets(pool, owner_id, tmp_path, mine, ["WANDB_API_KEY"])
        missing = await refused(nc, mine, 1, ["WANDB_API_KEY"], status=404, job=wanting)
        assert missing.code == "secret_missing", missing
        assert missing.message == "W&B API key not set: PUT /api/secrets/wandb_api_key"
    finally:
        await nc.close()
        await other.close()
        await pool.execute("DELETE FROM user_secrets WHERE user_id = $1", owner_id)
