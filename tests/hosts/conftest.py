"""Fixtures of the hosts tier: agents on hosts of their own (network namespaces, each with its own folder) that
reach the control plane only through NATS on one bridge address; the control plane's services run on this host
with their own NATS server (bound to that address), their own database and their own folder, in the `objects`
storage mode: jobs' files travel in NATS buckets."""

from __future__ import annotations

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
from llmct.embedded import NatsServer, free_port
from llmct.launcher import TINY_MODEL, ServiceProcess, process_env, start_services, stop_services
from services.common.settings import storage_from_env
from services.common.store import migrate
from tests.fixtures_netns import HostNetwork, IsolatedHost, unavailable

CONTROL_PLANE = ("auth", "scheduler", "datasets", "registry", "gateway")


@dataclass
class ControlPlane:
    env: dict[str, str]
    nats: NatsServer
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    agents: list[str] = field(default_factory=list)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.services['gateway'].port}"

    def agent_env(self, host: IsolatedHost, agent_id: str, **extra: str) -> dict[str, str]:
        """What an agent on `host` runs with: its own NATS user, its own folder, nothing of the control plane's."""
        creds = self.nats.add_agent(agent_id)
        env = {
            **self.env,
            "HOST_BASE_PATH": str(host.root),
            "LLMCT_AGENT_ID": agent_id,
            "LLMCT_AGENT_NATS_USER": creds["NATS_USER"],
            "LLMCT_AGENT_NATS_PASSWORD": creds["NATS_PASSWORD"],
            "LLMCT_AGENT_PORT": str(free_port()),
            "LLMCT_HEARTBEAT_S": "1",
            "LLMCT_RUNTIME": "process",
            "LLMCT_CPU_SLOTS": "1",
            **extra,
        }
        return process_env("agent", env)

    def start_agent(self, host: IsolatedHost, agent_id: str, **extra: str):
        env = self.agent_env(host, agent_id, **extra)
        self.agents.append(agent_id)
        return host.start([sys.executable, "-m", "llmct.cli", "service", "agent"], env, host.root / "agent.log")


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
        "HF_HUB_OFFLINE": "1",
        "LLMCT_REGISTER_MAX": "100000",
    }
    for name in CONTROL_PLANE:
        env[f"LLMCT_{name.upper()}_PORT"] = str(free_port())
    plane = ControlPlane(env=env, nats=nats)
    ensure_tiny_preset(storage_from_env(env), database.url, TINY_MODEL)  # on the control plane's disk only
    try:
        started = start_services(env, tmp_path_factory.mktemp("hosts-logs"), names=CONTROL_PLANE)
        plane.services = {s.name: s for s in started}
        yield plane
    finally:
        stop_services(list(plane.services.values()))
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
    conn = await asyncpg.connect(control_plane.env["DATABASE_URL"])
    try:
        await conn.execute("UPDATE agents SET offline_since = now() WHERE offline_since IS NULL")
    finally:
        await conn.close()
