"""Join tokens with real Postgres and NATS: an admin's token spent by joins (one use each) until used up, expired
or revoked, each refusal a clear 4xx; only admins manage tokens; tokens and NATS passwords are kept as hashes only;
failed joins are throttled per client; a join's NATS user really logs in once the users are synced, and revoking
it closes the connection at once."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib

import bcrypt
import nats
import pytest
from litestar.testing import AsyncTestClient

from llmct.usersync import SyncThread, UsersSync
from services.common.nats_auth import agent_inbox_prefix
from tests.helpers import assert_error, eventually, unique

pytestmark = pytest.mark.integration

JOIN_MAX_FAILURES = 5


@pytest.fixture(scope="module")
async def scheduler(settings):
    """The scheduler in-process, with a join throttle small enough to reach (the session's is out of reach)."""
    from services.scheduler.app import create_app

    own = dataclasses.replace(settings, join_max_failures=JOIN_MAX_FAILURES)
    async with AsyncTestClient(app=create_app(own)) as client:
        yield client


@pytest.fixture(scope="module")
def users_sync(nats_server, stack_env):
    """What `llmct up`'s launcher runs beside its nats-server: joined agents' users follow the table."""
    thread = SyncThread(UsersSync(nats_server.url, stack_env["DATABASE_URL"], nats_server.set_joined, every_s=2))
    yield thread.start()
    thread.stop()


@pytest.fixture
async def no_failures(pool):
    """Failed joins of the in-process client counted from zero (the throttle test counts them)."""
    await pool.execute("DELETE FROM join_failures WHERE address = 'testclient'")
    yield
    await pool.execute("DELETE FROM join_failures WHERE address = 'testclient'")


async def new_token(scheduler, admin, **body) -> dict:
    r = await scheduler.post("/api/agents/join-tokens", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()


async def join(scheduler, token: str, agent_id: str | None = None, hostname: str = "gpu-host"):
    body = {"token": token, "hostname": hostname, **({"agent_id": agent_id} if agent_id else {})}
    return await scheduler.post("/api/agents/join", json=body)


async def test_a_token_joins_as_often_as_allowed_and_keeps_only_hashes(scheduler, people, pool, no_failures):
    admin = people["fleet-admin"][1]
    created = await new_token(scheduler, admin, max_uses=2, expires_in_hours=2, note="rack 4")
    token = created["token"]
    assert token.startswith("llmct_join_") and created["state"] == "active" and created["uses"] == 0
    first, second = unique("joined"), unique("joined")

    r = await join(scheduler, token, first)
    assert r.status_code == 201, r.text
    joined = r.json()
    assert joined["agent_id"] == first and joined["nats_user"] == f"agent-{first}" and joined["nats_password"]
    assert joined["storage_mode"] == "shared" and joined["heartbeat_s"] > 0 and joined["nats_urls"]
    assert all("@" not in url for url in joined["nats_urls"])  # never the services' credentials
    assert (await join(scheduler, token, first)).status_code == 409  # the id has its user already
    assert (await join(scheduler, token, second)).status_code == 201
    assert_error(await join(scheduler, token, unique("joined")), 403, "join_token_used_up")

    listed = (await scheduler.get("/api/agents/join-tokens", headers=admin)).json()
    mine = next(t for t in listed if t["id"] == created["id"])
    assert mine["uses"] == 2 and mine["state"] == "used_up" and mine["note"] == "rack 4"
    assert [u["agent_id"] for u in mine["joined"]] == [first, second] and "token" not in mine

    # Kept as hashes only: the token as sha256, the NATS password as bcrypt (what nats-server's config accepts).
    row = await pool.fetchrow("SELECT * FROM join_tokens WHERE id = $1", created["id"])
    assert row["token_hash"] == hashlib.sha256(token.encode()).digest()
    assert token not in str(dict(row))
    stored = await pool.fetchval("SELECT password_hash FROM agent_credentials WHERE agent_id = $1", first)
    assert stored.startswith("$2b$") and joined["nats_password"] not in stored
    assert bcrypt.checkpw(joined["nats_password"].encode(), stored.encode())


async def test_expired_revoked_and_unknown_tokens_are_refused(scheduler, people, pool, no_failures):
    admin = people["fleet-admin"][1]
    expired = await new_token(scheduler, admin)
    await pool.execute("UPDATE join_tokens SET expires_at = now() - interval '1 second' WHERE id = $1", expired["id"])
    assert_error(await join(scheduler, expired["token"], unique("late")), 403, "join_token_expired")

    revoked = await new_token(scheduler, admin, max_uses=5)
    kept = unique("kept")
    assert (await join(scheduler, revoked["token"], kept)).status_code == 201
    r = await scheduler.delete(f"/api/agents/join-tokens/{revoked['id']}", headers=admin)
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    assert_error(await join(scheduler, revoked["token"], unique("after")), 403, "join_token_revoked")
    # Agents that joined before keep their NATS user.
    credentials = (await scheduler.get("/api/agents/credentials", headers=admin)).json()
    assert kept in {c["agent_id"] for c in credentials}

    assert_error(await join(scheduler, "llmct_join_" + "x" * 43, unique("guess")), 401, "join_token_invalid")
    assert_error(await scheduler.delete("/api/agents/join-tokens/jtk_missing", headers=admin), 404, "not_found")


async def test_only_admins_manage_tokens_and_bad_input_is_a_4xx(scheduler, people, no_failures):
    admin, user = people["fleet-admin"][1], people["fleet-owner"][1]
    token = await new_token(scheduler, admin)
    for method, path in (
        ("POST", "/api/agents/join-tokens"),
        ("GET", "/api/agents/join-tokens"),
        ("DELETE", f"/api/agents/join-tokens/{token['id']}"),
        ("GET", "/api/agents/credentials"),
        ("DELETE", "/api/agents/anything/credentials"),
    ):
        body = {"json": {}} if method == "POST" else {}
        assert_error(await scheduler.request(method, path, headers=user, **body), 403)
        assert_error(await scheduler.request(method, path, **body), 401)

    for body, field in (
        ({"max_uses": 0}, "max_uses"),
        ({"expires_in_hours": 0}, "expires_in_hours"),
        ({"expires_in_hours": 24 * 365}, "expires_in_hours"),
        ({"uses": 3}, "uses"),
    ):
        r = await scheduler.post("/api/agents/join-tokens", json=body, headers=admin)
        assert_error(r, 422, field=field)
    assert_error(await join(scheduler, token["token"], "bad.id"), 422, "invalid_field", "agent_id")
    assert_error(await join(scheduler, token["token"], "join-tokens"), 422, "invalid_field", "agent_id")
    r = await scheduler.post("/api/agents/join", json={"token": token["token"]})
    assert r.status_code in (400, 422) and r.json()["error"]["field"] == "hostname"
    listed = (await scheduler.get("/api/agents/join-tokens", headers=admin)).json()
    assert next(t for t in listed if t["id"] == token["id"])["uses"] == 0  # refusals spent nothing


async def test_failed_joins_are_throttled_per_client(scheduler, people, no_failures):
    admin = people["fleet-admin"][1]
    good = await new_token(scheduler, admin)
    for _ in range(JOIN_MAX_FAILURES):
        assert_error(await join(scheduler, "llmct_join_wrong"), 401, "join_token_invalid")
    r = await join(scheduler, good["token"], unique("late"))
    assert_error(r, 429, "too_many_attempts")
    assert int(r.headers["Retry-After"]) > 0


async def agent_connections(nats_server, user: str) -> int:
    return len(await asyncio.to_thread(nats_server.connections, user))


async def agent_connections_is(nats_server, user: str, expected: int) -> bool:
    return await agent_connections(nats_server, user) == expected


async def test_a_joined_user_logs_in_and_revoking_it_closes_its_connection(
    scheduler, people, nats_server, users_sync, no_failures
):
    admin = people["fleet-admin"][1]
    token = await new_token(scheduler, admin)
    agent_id = unique("live")
    joined = (await join(scheduler, token["token"], agent_id)).json()
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    nc = await nats.connect(  # the join waited for the sync: the first connect works
        joined["nats_urls"],
        user=joined["nats_user"],
        password=joined["nats_password"],
        inbox_prefix=agent_inbox_prefix(agent_id),
        max_reconnect_attempts=2,
        reconnect_time_wait=0.2,
        closed_cb=on_closed,
    )
    assert await agent_connections(nats_server, joined["nats_user"]) == 1

    r = await scheduler.delete(f"/api/agents/{agent_id}/credentials", headers=admin)
    assert r.status_code == 204
    await eventually(lambda: agent_connections_is(nats_server, joined["nats_user"], 0), timeout=3)
    await asyncio.wait_for(closed.wait(), timeout=10)  # its reconnects were refused: it gave up
    assert nc.is_closed
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            joined["nats_urls"],
            user=joined["nats_user"],
            password=joined["nats_password"],
            allow_reconnect=False,
            max_reconnect_attempts=0,
        )
    assert_error(await scheduler.delete(f"/api/agents/{agent_id}/credentials", headers=admin), 404)
