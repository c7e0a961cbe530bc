"""A service that loses Postgres or NATS says so on /health, recovers, and loses nothing accepted."""

import asyncio
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from llmct.embedded import NatsServer, PostgresServer, free_port
from services.auth.app import create_app as create_auth
from services.common.security import read_token
from services.common.store import migrate
from services.scheduler.app import create_app as create_scheduler
from tests.helpers import eventually, unique

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def own_postgres():
    base = Path(tempfile.mkdtemp(prefix="llmct-pg-"))
    base.chmod(0o755)
    server = PostgresServer(data_dir=base / "data", port=free_port(), database="resilience").start()
    migrate(server.url)
    yield server
    server.stop("immediate")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def own_nats(tmp_path):
    server = NatsServer(port=free_port(), monitor_port=free_port(), store_dir=tmp_path / "js").start()
    yield server
    server.stop()


async def test_postgres_outage(settings, own_postgres):
    app = create_auth(dataclasses.replace(settings, database_url=own_postgres.url))
    async with AsyncTestClient(app=app) as client:
        assert (await client.get("/health")).status_code == 200
        await asyncio.to_thread(own_postgres.stop, "fast")
        r = await client.get("/health")
        assert r.status_code == 503
        assert r.json()["checks"]["postgres"] != "ok" and r.json()["checks"]["nats"] == "ok"
        assert r.json()["down"] == ["postgres"], "it says which dependency is down"
        body = {"username": unique("during-outage"), "password": "outage-pass-42", "invite_code": "test-invite"}
        r = await client.post("/api/auth/register", json=body)
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
        await asyncio.to_thread(own_postgres.start)

        async def healthy():
            return (await client.get("/health")).status_code == 200

        await eventually(healthy)
        assert (await client.post("/api/auth/register", json=body)).status_code == 201


async def test_nats_outage_loses_no_revocation(settings, own_nats):
    """A logout accepted while NATS is away still reaches every other service once it is back."""
    own = dataclasses.replace(settings, nats_url=own_nats.url)
    auth, other = create_auth(own), create_scheduler(own)
    async with AsyncTestClient(app=auth) as client, AsyncTestClient(app=other):
        creds = {"username": unique("nats-outage"), "password": "outage-pass-42"}
        await client.post("/api/auth/register", json={**creds, "invite_code": "test-invite"})
        token = (await client.post("/api/auth/login", json=creds)).json()["access_token"]
        session_id = read_token(settings.secret_key, token)["sid"]
        await asyncio.to_thread(own_nats.stop)
        r = await client.get("/health")
        assert r.status_code == 503 and r.json()["checks"]["nats"] != "ok" and r.json()["down"] == ["nats"]
        r = await client.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 204
        assert session_id not in other.state.revoked_sessions
        await asyncio.to_thread(own_nats.start)

        async def healthy():
            return (await client.get("/health")).status_code == 200

        await eventually(healthy)
        await eventually(lambda: asyncio.sleep(0, result=session_id in other.state.revoked_sessions))
        assert (await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})).status_code == 401


async def test_refuses_unmigrated_database(stack_env, postgres_server):
    conn = await asyncpg.connect(postgres_server.url)
    await conn.execute("DROP DATABASE IF EXISTS unmigrated")
    await conn.execute("CREATE DATABASE unmigrated")
    await conn.close()
    env = {
        **os.environ,
        **stack_env,
        "LLMCT_AUTH_PORT": str(free_port()),
        "DATABASE_URL": postgres_server.url.rsplit("/", 1)[0] + "/unmigrated",
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "llmct.cli", "service", "auth"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "refuses to start" in result.stderr and "run `llmct migrate`" in result.stderr
