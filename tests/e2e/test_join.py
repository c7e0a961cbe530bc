"""A GPU host joins with one command: `llmct agent join <gateway> <token>` obtains the agent's own NATS user,
saves it privately and starts the agent, which heartbeats into the fleet; `llmct agent start` runs it again from
what was saved; revoking the agent's credentials closes its NATS connection at once and it cannot come back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest

from llmct.embedded import free_port
from tests.helpers import assert_error, eventually, unique

from .helpers import admin_token

pytestmark = pytest.mark.e2e


def llmct(*args: str, log: Path) -> subprocess.Popen:
    """`llmct ...` as a GPU host would run it: no database, no secret key, no NATS settings of the platform's."""
    env = {**os.environ, "LLMCT_AGENT_PORT": str(free_port()), "LLMCT_CPU_SLOTS": "0", "LLMCT_RUNTIME": "process"}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "llmct.cli", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


async def test_a_host_joins_with_one_command_and_revoking_shuts_it_out(gw, stack, nats_server, tmp_path):
    admin = {"Authorization": f"Bearer {await admin_token(gw, stack)}"}
    r = await gw.post("/api/agents/join-tokens", json={"max_uses": 1, "expires_in_hours": 1}, headers=admin)
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    agent_id, base, log = unique("joined-host"), tmp_path / "host", tmp_path / "agent.log"

    async def beat_at() -> datetime | None:
        agents = (await gw.get("/api/agents", headers=admin)).json()["agents"]
        agent = next((a for a in agents if a["id"] == agent_id and a["state"] == "online"), None)
        return agent and agent["last_beat_at"]

    async def beats_after(moment) -> datetime | None:
        at = await beat_at()
        return at if at and (moment is None or at > moment) else None

    agent = llmct("agent", "join", stack.gateway_url, token, "--agent-id", agent_id, "--base", str(base), log=log)
    db = await asyncpg.connect(stack.env["DATABASE_URL"])
    try:
        first = await eventually(lambda: beats_after(None), timeout=60)
        user = f"agent-{agent_id}"
        assert len(nats_server.connections(user)) == 1, log.read_text()
        env = environ_of(agent.pid)  # the join became the agent itself
        assert env["NATS_USER"] == user and env["LLMCT_AGENT_ID"] == agent_id
        assert not {"DATABASE_URL", "LLMCT_SECRET_KEY", "LLMCT_ADMIN_PASSWORD"} & set(env)
        saved = base.with_name("host-state") / "agent" / "joined.json"
        assert saved.stat().st_mode & 0o777 == 0o600 and saved.parent.stat().st_mode & 0o777 == 0o700
        assert env["NATS_PASSWORD"] in saved.read_text()
        # The token was single use: a second host is refused with the reason (the token read from stdin this time).
        again = subprocess.run(
            [
                sys.executable,
                "-m",
                "llmct.cli",
                "agent",
                "join",
                stack.gateway_url,
                "-",
                "--agent-id",
                unique("second"),
            ],
            input=token + "\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode == 2 and "join_token_used_up" in again.stderr, again.stderr

        # Later, on the same host: `llmct agent start` runs it again from what the join saved.
        stop(agent)
        agent = llmct("agent", "start", "--base", str(base), log=log)
        last = await eventually(lambda: beats_after(first), timeout=60)

        r = await gw.delete(f"/api/agents/{agent_id}/credentials", headers=admin)
        assert r.status_code == 204, r.text

        async def shut_out() -> bool:
            return not await asyncio.to_thread(nats_server.connections, user)

        await eventually(shut_out, timeout=3)  # at once: the server dropped it on reload
        await asyncio.sleep(1.5)  # the scheduler's last batch of its beats written
        silent_since = await beat_at()
        await asyncio.sleep(3)  # it keeps trying, and is refused every time: no connection, no heartbeat
        assert await shut_out() and agent.poll() is None
        assert await beat_at() == silent_since and silent_since >= last
        assert_error(await gw.delete(f"/api/agents/{agent_id}/credentials", headers=admin), 404)
    finally:
        stop(agent)
        await db.execute("DELETE FROM agents WHERE id = $1", agent_id)  # no other test sees it
        await db.close()
