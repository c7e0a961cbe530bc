"""`llmct agent join` and `llmct agent start`: a GPU host joins with an admin's join token and runs its agent.

The join answer (the agent's id, its own NATS user and password, where NATS is, how to behave) is saved in the
host's state folder, readable by this user only, and `llmct agent start` runs the agent with it again later:
nothing is copied by hand (docs/fleet.md, "Joining").
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import nats
import nats.errors

from services.common.bus import tls_context
from services.common.nats_auth import agent_inbox_prefix
from services.common.private import private_folder, write_private
from services.common.settings import settings_from_env, storage_from_env

from .launcher import AGENT_NEVER_SEES

SAVED_NAME = "joined.json"
LOGIN_WAIT_S = 60.0  # how long a fresh NATS user may take to reach the server (a periodic sync, a cluster)


class JoinFailed(RuntimeError):
    """The gateway refused the join, or NATS never let the new user in."""


def host_environ(base: str | None) -> dict[str, str]:
    """This process's environment, with HOST_BASE_PATH set to `base` when given."""
    environ = dict(os.environ)
    if base:
        environ["HOST_BASE_PATH"] = str(Path(base).resolve())
    return environ


def saved_path(environ: Mapping[str, str]) -> Path:
    """Where the join answer is kept: `<state folder>/agent/joined.json` (0600 in a 0700 folder)."""
    return storage_from_env(environ).state / "agent" / SAVED_NAME


def ask_to_join(gateway_url: str, token: str, agent_id: str | None, hostname: str) -> dict:
    """POST /api/agents/join; the agent's settings, or JoinFailed with the gateway's own reason."""
    body = {"token": token, "hostname": hostname, **({"agent_id": agent_id} if agent_id else {})}
    try:
        response = httpx.post(gateway_url.rstrip("/") + "/api/agents/join", json=body, timeout=30)
    except httpx.HTTPError as exc:
        raise JoinFailed(f"could not reach {gateway_url}: {exc}") from exc
    if response.status_code != 201:
        try:
            error = response.json()["error"]
            reason = f"{error['message']} ({error['code']})"
        except (ValueError, KeyError, TypeError):
            reason = f"HTTP {response.status_code}"
        raise JoinFailed(f"the join was refused: {reason}")
    return response.json()


def save(path: Path, joined: dict) -> Path:
    private_folder(path.parent)
    write_private(path, (json.dumps(joined, indent=2) + "\n").encode())
    return path


def agent_env(joined: Mapping, environ: Mapping[str, str]) -> dict[str, str]:
    """The agent's environment: this host's, with the joined identity, NATS user and settings in it."""
    # An agent never needs the platform's secrets, nor another NATS identity.
    env = {
        k: v
        for k, v in environ.items()
        if k not in AGENT_NEVER_SEES and not k.startswith(("NATS_", "LLMCT_AGENT_NATS_"))
    }
    env.update(
        {
            "NATS_URL": ",".join(joined["nats_urls"]),
            "NATS_USER": joined["nats_user"],
            "NATS_PASSWORD": joined["nats_password"],
            "LLMCT_AGENT_ID": joined["agent_id"],
            "LLMCT_HEARTBEAT_S": str(joined["heartbeat_s"]),
            "LLMCT_STORAGE_MODE": joined["storage_mode"],
        }
    )
    return env


async def _logs_in(joined: Mapping, tls: ssl.SSLContext | None) -> bool:
    try:
        nc = await nats.connect(
            joined["nats_urls"],
            user=joined["nats_user"],
            password=joined["nats_password"],
            inbox_prefix=agent_inbox_prefix(joined["agent_id"]),
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=3,
            tls=tls,
        )
    except (nats.errors.Error, OSError, TimeoutError):  # not yet in the server's users, or the server not reachable yet
        return False
    await nc.close()
    return True


def wait_for_login(joined: Mapping, timeout: float = LOGIN_WAIT_S, tls: ssl.SSLContext | None = None) -> None:
    """Until NATS lets the new user in: the scheduler's nudge makes this quick, a periodic sync takes longer."""
    deadline = time.monotonic() + timeout
    while not asyncio.run(_logs_in(joined, tls)):
        if time.monotonic() > deadline:
            raise JoinFailed(
                f"NATS at {', '.join(joined['nats_urls'])} did not accept user {joined['nats_user']} within "
                f"{timeout:.0f} s: is `llmct nats sync-users` running beside it (deploy/README.md)?"
            )
        time.sleep(1)


def run_agent(env: dict[str, str]) -> None:
    """Become the agent (`llmct service agent`): signals reach it directly, as with any service."""
    command = [sys.executable, "-m", "llmct.cli", "service", "agent"]
    sys.stdout.flush()
    os.execve(sys.executable, command, env)


def join(gateway_url: str, token: str, agent_id: str | None, base: str | None, start: bool = True) -> int:
    environ = host_environ(base)
    joined = ask_to_join(gateway_url, token, agent_id, socket.gethostname())
    path = save(saved_path(environ), joined)
    print(f"joined as agent {joined['agent_id']} (NATS user {joined['nats_user']}); settings saved in {path}")
    settings = settings_from_env(environ)  # NATS_TLS_*: the host's own, a cluster with TLS between hosts
    wait_for_login(joined, tls=tls_context(settings.nats_tls_ca, settings.nats_tls_cert, settings.nats_tls_key))
    if start:
        run_agent(agent_env(joined, environ))
    return 0


def start(base: str | None) -> int:
    environ = host_environ(base)
    path = saved_path(environ)
    if not path.is_file():
        raise JoinFailed(f"{path} does not exist: join first (`llmct agent join <gateway URL> <token>`)")
    path.chmod(0o600)
    run_agent(agent_env(json.loads(path.read_text()), environ))
    return 0
