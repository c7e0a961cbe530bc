"""`llmct up`'s servers: embedded NATS (with the local agent's own user) and Postgres, started and stopped."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import asyncpg
import nats
import pytest

from llmct.embedded import free_port
from llmct.launcher import LocalStack
from services.common.bus import close_bus, connect_bus
from services.common.contracts import Subjects
from services.common.nats_auth import agent_user, new_agent_password
from services.common.settings import StoragePaths
from services.common.store import migrate

pytestmark = pytest.mark.integration


@pytest.fixture
def open_folder():
    """Postgres runs as its own user, which cannot enter pytest's private tmp folders."""
    folder = Path(tempfile.mkdtemp(prefix="llmct-up-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


async def reachable(env: dict) -> None:
    conn = await asyncpg.connect(env["DATABASE_URL"])
    assert await conn.fetchval("SELECT 1") == 1
    await conn.close()
    nc = await connect_bus(env["NATS_URL"], "launcher-test")
    assert nc.is_connected
    await close_bus(nc)


def test_local_stack_starts_nats_and_postgres_and_keeps_its_secrets(open_folder):
    """Synchronous, as `llmct up` is (it runs its own event loops)."""
    base = open_folder / "cloud-llm"
    storage = StoragePaths(base=base, logs=base / "logs", hf_cache=base / "hf-cache")
    storage.ensure()
    env = {
        "LLMCT_NATS_PORT": str(free_port()),
        "LLMCT_PG_PORT": str(free_port()),
        "LLMCT_AGENT_ID": "up-agent",
        "PATH": os.environ.get("PATH", ""),
    }
    stack = LocalStack(storage=storage, env=env)
    stack.prepare_env()
    try:
        stack.start_servers()  # inside: whatever started is stopped even when the rest fails
        assert stack.env["NATS_URL"] and stack.env["DATABASE_URL"], "both embedded servers started"
        asyncio.run(reachable(stack.env))
        assert stack.env["LLMCT_AGENT_NATS_USER"] and stack.env["LLMCT_AGENT_NATS_PASSWORD"]
    finally:
        stack.stop()
    again = LocalStack(storage=storage, env={"PATH": env["PATH"]})
    again.prepare_env()
    assert again.env["LLMCT_SECRET_KEY"] == stack.env["LLMCT_SECRET_KEY"], "a second `up` keeps users' tokens valid"


async def joined_user_follows_the_table(env: dict, nats_url: str) -> None:
    """An agent's row in `agent_credentials` lets it in once the scheduler nudges; deleting it shuts it out."""
    agent_id, (password, password_hash) = "joined-up", new_agent_password()
    db = await asyncpg.connect(env["DATABASE_URL"])
    services = await nats.connect(env["NATS_URL"])
    try:
        await db.execute(
            "INSERT INTO agent_credentials (agent_id, nats_user, password_hash, hostname) VALUES ($1, $2, $3, 'h')",
            agent_id,
            agent_user(agent_id),
            password_hash,
        )
        assert (await services.request(Subjects.AGENT_USERS_CHANGED, b"", timeout=10)).data == b"synced"
        closed = asyncio.Event()

        async def on_closed() -> None:
            closed.set()

        agent = await nats.connect(
            nats_url, user=agent_user(agent_id), password=password, max_reconnect_attempts=1, closed_cb=on_closed
        )
        await db.execute("DELETE FROM agent_credentials WHERE agent_id = $1", agent_id)
        await services.request(Subjects.AGENT_USERS_CHANGED, b"", timeout=10)
        await asyncio.wait_for(closed.wait(), timeout=10)
        assert agent.is_closed
    finally:
        await services.close()
        await db.close()


def test_the_launcher_gives_joined_agents_their_nats_user_and_takes_it_back(open_folder):
    base = open_folder / "cloud-llm"
    storage = StoragePaths(base=base, logs=base / "logs", hf_cache=base / "hf-cache")
    storage.ensure()
    env = {"LLMCT_NATS_PORT": str(free_port()), "LLMCT_PG_PORT": str(free_port()), "PATH": os.environ.get("PATH", "")}
    stack = LocalStack(storage=storage, env=env)
    stack.prepare_env()
    try:
        stack.start_servers()
        migrate(stack.env["DATABASE_URL"])
        stack.follow_joined_agents()
        assert stack.nats is not None
        asyncio.run(joined_user_follows_the_table(stack.env, stack.nats.address))
    finally:
        stack.stop()
