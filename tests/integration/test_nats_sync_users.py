"""`llmct nats sync-users` beside a production nats-server: the hand-kept block plus the joined agents' users
(bcrypt hashes) written to the file nats.conf includes, and the server reloaded; a removed user's connection is
closed by that reload and refused after."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import nats
import pytest

from llmct.embedded import free_port, nats_server_binary, wait_until
from services.common.nats_auth import agent_user, new_agent_password
from tests.helpers import eventually, unique

pytestmark = pytest.mark.integration


def llmct(*args: str, env: dict) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "llmct.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def logs_in(url: str, user: str, password: str) -> bool:
    try:
        nc = await nats.connect(url, user=user, password=password, allow_reconnect=False, max_reconnect_attempts=0)
    except nats.errors.Error:
        return False
    await nc.close()
    return True


async def test_sync_users_writes_the_joined_agents_and_reloads_the_server(tmp_path, postgres_server, pool):
    env = {**os.environ, "DATABASE_URL": postgres_server.url}
    base, out, pid_file = tmp_path / "auth.base.json", tmp_path / "auth.conf", tmp_path / "nats.pid"
    base.write_text(llmct("nats", "users", "--service-password", "services-pw", "--agent", "by-hand", env=env))
    llmct("nats", "sync-users", "--base", str(base), "--out", str(out), env=env)  # the first file, before the server
    port, monitor = free_port(), free_port()
    (tmp_path / "nats.conf").write_text(
        f'listen: "127.0.0.1:{port}"\nhttp: "127.0.0.1:{monitor}"\npid_file: "{pid_file}"\ninclude ./auth.conf\n'
    )
    server = subprocess.Popen([nats_server_binary(), "-c", str(tmp_path / "nats.conf")], stdout=subprocess.DEVNULL)
    agent_id, (password, password_hash) = unique("synced"), new_agent_password()
    url = f"nats://127.0.0.1:{port}"
    try:
        wait_until(pid_file.exists, timeout=10, what="nats-server")
        assert not await logs_in(url, agent_user(agent_id), password)
        await pool.execute(
            "INSERT INTO agent_credentials (agent_id, nats_user, password_hash, hostname) VALUES ($1, $2, $3, 'h')",
            agent_id,
            agent_user(agent_id),
            password_hash,
        )
        assert "written" in llmct(
            "nats", "sync-users", "--base", str(base), "--out", str(out), "--pid-file", str(pid_file), env=env
        )
        assert out.stat().st_mode & 0o777 == 0o600 and password not in out.read_text()
        assert "agent-by-hand" in out.read_text()  # the hand-kept users stay
        await eventually(lambda: logs_in(url, agent_user(agent_id), password), timeout=5)

        closed = asyncio.Event()

        async def on_closed() -> None:
            closed.set()

        nc = await nats.connect(
            url, user=agent_user(agent_id), password=password, max_reconnect_attempts=1, closed_cb=on_closed
        )
        await pool.execute("DELETE FROM agent_credentials WHERE agent_id = $1", agent_id)
        llmct("nats", "sync-users", "--base", str(base), "--out", str(out), "--pid-file", str(pid_file), env=env)
        await asyncio.wait_for(closed.wait(), timeout=10)  # dropped on reload, its reconnect refused
        assert nc.is_closed and not await logs_in(url, agent_user(agent_id), password)
        assert "unchanged" in llmct("nats", "sync-users", "--base", str(base), "--out", str(out), env=env)
    finally:
        await pool.execute("DELETE FROM agent_credentials WHERE agent_id = $1", agent_id)
        server.send_signal(signal.SIGTERM)
        server.wait(10)
