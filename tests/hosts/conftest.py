"""Fixtures of the hosts tier: agents on hosts of their own (network namespaces, each with its own folder) that
reach the control plane only through NATS on one bridge address; the control plane's services run on this host
with their own NATS server (bound to that address), their own database and their own folder, in the `objects`
storage mode: jobs' files travel in NATS buckets."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from llmct.bootstrap import ensure_tiny_preset
from llmct.embedded import NatsServer, free_port, wait_until
from llmct.launcher import TINY_MODEL, ServiceProcess, start_services, stop_services
from llmct.usersync import SyncThread, UsersSync
from services.common.settings import storage_from_env
from services.common.store import migrate
from tests.fixtures_netns import HostNetwork, IsolatedHost, unavailable

CONTROL_PLANE = ("auth", "scheduler", "datasets", "registry")
# What a GPU host's own environment never holds: the platform's settings reach it through the join.
PLATFORM_VARIABLES = ("NATS_", "LLMCT_", "DATABASE_URL", "INVITE_CODE", "HOST_BASE_PATH", "LOG_BASE_PATH", "HF_CACHE")


@dataclass
class ControlPlane:
    env: dict[str, str]
    nats: NatsServer
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    agents: list[str] = field(default_factory=list)

    @property
    def gateway_url(self) -> str:
        """On the bridge: where this host's tests and the hosts' `llmct agent join` reach it alike."""
        gateway = self.services["gateway"]
        return f"http://{gateway.host}:{gateway.port}"

    def join(self, host: IsolatedHost, agent_id: str, token: str, **extra: str):
        """`llmct agent join` on `host`, as an operator runs it there: the gateway's URL and a join token, nothing
        of the control plane's environment (no NATS URL or user, no database, no secret)."""
        own = {k: v for k, v in os.environ.items() if not k.startswith(PLATFORM_VARIABLES)}
        env = {**own, "HF_HUB_OFFLINE": "1", "LLMCT_RUNTIME": "process", "LLMCT_CPU_SLOTS": "1", **extra}
        command = ["agent", "join", self.gateway_url, token, "--agent-id", agent_id, "--base", str(host.root)]
        self.agents.append(agent_id)
        return host.start([sys.executable, "-m", "llmct.cli", *command], env, host.root.parent / f"{host.name}.log")


@pytest.fixture(scope="package")
def network():
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    net = HostNetwork(Path(tempfile.mkdtemp(prefix="llmct-hosts-")))
    try:
        yield net
    finally:
        net.close()


@pytest.fixture(scope="package")
def control_plane(network, postgres_server, tmp_path_factory):
    """NATS on the bridge address (the only one the agents reach), a database of its own, the services here."""
    store = tmp_path_factory.mktemp("hosts-nats")
    nats = NatsServer(port=free_port(), monitor_port=free_port(), store_dir=store, host=network.address)
    nats.start()
    database = dataclasses.replace(postgres_server, database="llmct_hosts")
    database._create_database()
    migrate(database.url)
    env = {
        **os.environ,
        "NATS_URL": nats.url,
        "DATABASE_URL": database.url,
        "LLMCT_SECRET_KEY": secrets.token_hex(32),
        "INVITE_CODE": "hosts-invite",
        "LLMCT_ADMIN_USERNAME": "hosts-admin",
        "LLMCT_ADMIN_PASSWORD": "separate-7-lanterns",
        "HOST_BASE_PATH": str(tmp_path_factory.mktemp("control-plane")),
        "LLMCT_STORAGE_MODE": "objects",
        "LLMCT_AGENT_OFFLINE_S": "6",  # a killed host's job goes back to the queue soon
        "LLMCT_PUBLIC_HOST": network.address,  # the gateway, on the bridge: hosts reach it to join
        "LLMCT_PUBLIC_NATS_URL": nats.address,
        "HF_HUB_OFFLINE": "1",
        "LLMCT_REGISTER_MAX": "100000",
    }
    for name in (*CONTROL_PLANE, "gateway"):
        env[f"LLMCT_{name.upper()}_PORT"] = str(free_port())
    plane = ControlPlane(env=env, nats=nats)
    ensure_tiny_preset(storage_from_env(env), database.url, TINY_MODEL)  # on the control plane's disk only
    logs = tmp_path_factory.mktemp("hosts-logs")
    users = SyncThread(UsersSync(nats.url, database.url, nats.set_joined)).start()  # as `llmct up` does
    try:
        started = start_services(env, logs, names=CONTROL_PLANE)
        plane.services = {s.name: s for s in started}
        port = int(env["LLMCT_GATEWAY_PORT"])
        gateway = ServiceProcess(name="gateway", port=port, log_path=logs / "gateway.log", host=network.address)
        plane.services["gateway"] = gateway.start(env)
        wait_until(gateway.healthy, timeout=60, what="gateway", interval=0.1)
        yield plane
    finally:
        stop_services(list(plane.services.values()))
        users.stop()
        nats.stop()


@pytest.fixture
async def add_host(network, control_plane):
    """A new host for one test; its processes stop when the test ends, and its agents are then offline at once (a
    later test's job must not be placed on them)."""
    made: list[IsolatedHost] = []

    def add(label: str) -> IsolatedHost:
        made.append(network.add_host(label))
        return made[-1]

    yield add
    for host in made:
        host.stop_processes()
    await asyncio.sleep(2.5)  # a beat sent while stopping is written within the flush (1 s): not after this
    conn = await asyncpg.connect(control_plane.env["DATABASE_URL"])
    try:
        await conn.execute("UPDATE agents SET offline_since = now() WHERE offline_since IS NULL")
    finally:
        await conn.close()
