"""`llmct up`'s servers: embedded NATS (with the local agent's own user) and Postgres, started and stopped."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import asyncpg
import pytest

from llmct.embedded import free_port
from llmct.launcher import LocalStack
from services.common.bus import close_bus, connect_bus
from services.common.settings import StoragePaths

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
