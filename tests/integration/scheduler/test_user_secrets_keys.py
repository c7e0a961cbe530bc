"""LLMCT_SECRETS_KEY (services/scheduler/usersecrets/sealing.py): one scheduler at a time, in-process, each with its
own keys, so the one answering an agent is the one the test means. A new key goes first and the old one still
decrypts (rotation); a value written again moves to the new key; a key removed makes its values unreadable, said so;
without a key the secrets API answers 503 naming the setting while the rest of the scheduler works."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets

import pytest
from litestar.testing import AsyncTestClient

from services.common.contracts import JobSecrets, JobSecretsAsked, Subjects
from services.common.errors import ApiError
from services.common.requests import ask
from services.common.security import issue_token
from services.scheduler.usersecrets.sealing import key_id
from tests.helpers import assert_error, unique

from .helpers import connect_as, job_on, user

pytestmark = pytest.mark.integration

OLD, NEW = secrets.token_hex(32), secrets.token_hex(32)


@contextlib.asynccontextmanager
async def scheduler_with(settings, keys: str):
    from services.scheduler.app import create_app

    # No dispatching nor sweeping in the few seconds each lives: the test's job rows stay as they are put.
    quiet = dataclasses.replace(settings, secrets_key=keys, sweep_s=3600.0, offline_after_s=3600.0)
    async with AsyncTestClient(app=create_app(quiet)) as client:
        yield client


async def placed_job(pool, owner_id: str, agent_id: str, tmp_path) -> str:
    """A running job of `owner_id` on `agent_id` (registered and online: no sweep gives the job back), given
    WANDB_API_KEY."""
    await pool.execute(
        "INSERT INTO agents (id, hostname, gpus, cpu_slots) VALUES ($1, 'secrets-keys', '[]'::jsonb, 0) "
        "ON CONFLICT (id) DO UPDATE SET offline_since = NULL",
        agent_id,
    )
    job_id = await job_on(pool, owner_id, tmp_path, agent_id, 1, "running")
    await pool.execute("UPDATE jobs SET secret_names = '{WANDB_API_KEY}' WHERE id = $1", job_id)
    return job_id


async def asked(nc, agent_id: str, job_id: str) -> JobSecrets:
    question = JobSecretsAsked(job_id=job_id, attempt=1, names=["WANDB_API_KEY"])
    return await ask(nc, Subjects.job_secrets(agent_id), question, JobSecrets, owner="scheduler")


async def test_keys_rotate_and_a_removed_key_is_named(settings, owners, pool, nats_server, tmp_path):
    owner_id = await user(pool, "secrets-keys")
    token, _, _ = issue_token(settings.secret_key, user_id=owner_id, username="k", role="user", ttl_s=600)
    headers = {"Authorization": f"Bearer {token}"}
    agent_id, value = unique("keys-agent"), unique("rotated-value")
    nc = await connect_as(nats_server, agent_id, [])
    job_id = await placed_job(pool, owner_id, agent_id, tmp_path)
    stored = "SELECT key_id FROM user_secrets WHERE user_id = $1"
    try:
        async with scheduler_with(settings, OLD) as old:
            assert (await old.put("/api/secrets/wandb_api_key", json={"value": value}, headers=headers)).is_success
        assert await pool.fetchval(stored, owner_id) == key_id(OLD)

        async with scheduler_with(settings, f"{NEW}, {OLD}") as both:
            assert (await asked(nc, agent_id, job_id)).env == {"WANDB_API_KEY": value}, "the old key still decrypts"
            assert (await both.put("/api/secrets/wandb_api_key", json={"value": value}, headers=headers)).is_success
        assert await pool.fetchval(stored, owner_id) == key_id(NEW), "written again under the first key"

        async with scheduler_with(settings, NEW):
            assert (await asked(nc, agent_id, job_id)).env == {"WANDB_API_KEY": value}
        async with scheduler_with(settings, OLD):
            with pytest.raises(ApiError) as gone:
                await asked(nc, agent_id, job_id)
        assert gone.value.code == "secret_unreadable" and "no longer in LLMCT_SECRETS_KEY" in gone.value.message
        assert value not in gone.value.message
    finally:
        await nc.close()
        await pool.execute("UPDATE agents SET offline_since = now() WHERE id = $1", agent_id)


async def test_without_a_key_the_secrets_api_says_which_setting(settings, owners, pool, nats_server, tmp_path):
    owner_id = await user(pool, "secrets-nokey")
    token, _, _ = issue_token(settings.secret_key, user_id=owner_id, username="n", role="user", ttl_s=600)
    headers = {"Authorization": f"Bearer {token}"}
    agent_id = unique("nokey-agent")
    nc = await connect_as(nats_server, agent_id, [])
    job_id = await placed_job(pool, owner_id, agent_id, tmp_path)
    try:
        for keys in ("", "too-short"):
            async with scheduler_with(settings, keys) as off:
                for answer in (
                    await off.get("/api/secrets", headers=headers),
                    await off.put("/api/secrets/wandb_api_key", json={"value": "v"}, headers=headers),
                    await off.delete("/api/secrets/wandb_api_key", headers=headers),
                ):
                    error = assert_error(answer, 503, "secrets_unavailable")
                    assert "LLMCT_SECRETS_KEY" in error["message"]
                assert (await off.get("/api/jobs", headers=headers)).status_code == 200, "the rest works"
                with pytest.raises(ApiError) as refused:
                    await asked(nc, agent_id, job_id)
                assert refused.value.status == 503 and "LLMCT_SECRETS_KEY" in refused.value.message
    finally:
        await nc.close()
        await pool.execute("UPDATE agents SET offline_since = now() WHERE id = $1", agent_id)
