"""`llmct up`'s servers: embedded NATS (with the local agent's own user) and Postgres, started and stopped."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from pathlib import Path

import asyncpg
import httpx
import nats
import pytest

from llmct.embedded import free_port
from llmct.launcher import LocalStack
from services.common.bus import close_bus, connect_bus
from services.common.contracts import Subjects
from services.common.nats_auth import agent_user, new_agent_password
from services.common.settings import DEFAULT_PORTS, StoragePaths
from services.common.store import migrate
from tests.helpers import eventually

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
    assert again.env["LLMCT_SECRETS_KEY"] == stack.env["LLMCT_SECRETS_KEY"], "…and users' secrets readable"


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


async def train_a_tiny_job(env: dict) -> dict:
    """Log in as the admin, train the tiny preset for a few steps, wait for the end; the job's detail."""
    url = f"http://127.0.0.1:{env['LLMCT_GATEWAY_PORT']}"
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        login = {"username": env["LLMCT_ADMIN_USERNAME"], "password": env["LLMCT_ADMIN_PASSWORD"]}
        token = (await client.post("/api/auth/login", json=login)).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        request = {
            "kind": "train",
            "base_model": "tiny-llama",
            "datasets": ["tiny_sft"],
            "stage": "sft",
            "finetuning_type": "lora",
            "gpu_count": 0,
            "max_steps": 3,
            "save_steps": 3,
            "cutoff_len": 128,
            "lora_rank": 4,
        }
        r = await client.post("/api/jobs", json=request)
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]

        async def ended():
            job = (await client.get(f"/api/jobs/{job_id}")).json()
            return job if job["state"] in ("succeeded", "failed", "cancelled") else None

        return await eventually(ended, timeout=180)


def free_pair() -> int:
    """A free port whose +100 is free too (a second replica's)."""
    while True:
        port = free_port()
        if port + 100 < 65536:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port + 100)) != 0:
                    return port


@pytest.mark.slow
def test_up_with_a_three_node_nats_cluster(open_folder):
    """`make up` with LLMCT_NATS_NODES=3 and two schedulers and gateways: three routed nats-servers, every
    platform stream replicated three times, every service and the local agent connected with every node's URL, the
    replicas on the next ports, and a tiny job trains through the second gateway."""
    base = open_folder / "cloud-llm"
    storage = StoragePaths(base=base, logs=base / "logs", hf_cache=base / "hf-cache")
    nats_port = free_port()
    env = {
        "LLMCT_NATS_NODES": "3",
        "LLMCT_NATS_PORT": str(nats_port),
        "LLMCT_PG_PORT": str(free_port()),
        "LLMCT_AGENT_ID": "cluster-agent",
        "PATH": os.environ.get("PATH", ""),
        "LLMCT_SCHEDULER_REPLICAS": "2",
        "LLMCT_GATEWAY_REPLICAS": "2",
        **{f"LLMCT_{name.upper()}_PORT": str(free_pair()) for name in DEFAULT_PORTS},
    }
    stack = LocalStack(storage=storage, env=env)
    try:
        stack.start()
        assert stack.env["NATS_URL"].count("nats://") == 3 and stack.env["LLMCT_NATS_REPLICAS"] == "3"

        async def replicated() -> None:
            nc = await connect_bus(stack.env["NATS_URL"], "launcher-test")
            try:
                for stream in ("JOBS", "DISPATCH", "JOB_EVENTS", "LOG_INGEST", "LOGS", "DEAD_LETTERS"):
                    info = await nc.jetstream().stream_info(stream)
                    assert info.config.num_replicas == 3 and info.cluster is not None, stream
                    assert len(info.cluster.replicas or []) == 2, stream
            finally:
                await close_bus(nc)

        asyncio.run(replicated())
        second_gateway = {**stack.env, "LLMCT_GATEWAY_PORT": str(int(stack.env["LLMCT_GATEWAY_PORT"]) + 100)}
        job = asyncio.run(train_a_tiny_job(second_gateway))  # through the second gateway
        assert job["state"] == "succeeded", job.get("message")
        ports = sorted((s.name, s.port) for s in stack.services if s.name in ("scheduler", "gateway"))
        scheduler, gateway = int(stack.env["LLMCT_SCHEDULER_PORT"]), int(stack.env["LLMCT_GATEWAY_PORT"])
        assert ports == [("gateway", gateway), ("gateway", gateway + 100)] + [
            ("scheduler", scheduler),
            ("scheduler", scheduler + 100),
        ]
        assert stack.env["LLMCT_SCHEDULER_URLS"].count("http://") == 2
    finally:
        stack.stop()
    for port in (nats_port, nats_port + 1, nats_port + 2):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"a node still listens on {port} after stop"
