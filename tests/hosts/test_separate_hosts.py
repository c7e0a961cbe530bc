"""Agents on hosts of their own (issue 15): each in its own network namespace with its own folder, reaching the
control plane only through NATS, answering no connection from outside. What the platform needs of them travels
over NATS; these tests grow with the `objects` storage mode."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from tests.helpers import eventually, unique

pytestmark = pytest.mark.hosts


def reach(host, address: str, port: int) -> bool:
    """Whether a TCP connection from inside `host` to address:port is answered."""
    code = f"import socket; socket.create_connection(({address!r}, {port}), timeout=2).close()"
    return host.run("python3", "-c", code).returncode == 0


async def admin_headers(gw: httpx.AsyncClient, plane) -> dict[str, str]:
    creds = {"username": plane.env["LLMCT_ADMIN_USERNAME"], "password": plane.env["LLMCT_ADMIN_PASSWORD"]}
    r = await gw.post("/api/auth/login", json=creds)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_agents_on_hosts_of_their_own_join_the_fleet_over_nats_alone(network, control_plane):
    first, second = network.add_host(unique("a")[-6:]), network.add_host(unique("b")[-6:])
    ids = {unique("host-a"), unique("host-b")}
    for host, agent_id in zip((first, second), sorted(ids), strict=True):
        control_plane.start_agent(host, agent_id)

    # What a namespace reaches of this host: NATS on the bridge, and nothing else of the platform.
    nats_port = control_plane.nats.port
    assert await asyncio.to_thread(reach, first, network.address, nats_port)
    for name, service in control_plane.services.items():
        assert not await asyncio.to_thread(reach, first, network.address, service.port), name
    database_port = int(control_plane.env["DATABASE_URL"].rsplit(":", 1)[1].split("/")[0])
    assert not await asyncio.to_thread(reach, first, network.address, database_port)
    # Nothing dials into a namespace: a connection from here to an agent's address is not answered.
    with pytest.raises(OSError):
        socket.create_connection((second.address, nats_port), timeout=2).close()

    async with httpx.AsyncClient(base_url=control_plane.gateway_url, timeout=30) as gw:
        headers = await admin_headers(gw, control_plane)

        async def both_online():
            fleet = (await gw.get("/api/agents", headers=headers)).json()
            online = {agent["id"]: agent for agent in fleet["agents"] if agent["state"] == "online"}
            return [online[i] for i in sorted(ids)] if ids <= set(online) else None

        agents = await eventually(both_online, timeout=90)
    assert all(agent["last_beat_at"] for agent in agents)
    control_folder = control_plane.env["HOST_BASE_PATH"]
    for host in (first, second):
        assert (host.root / "agent.log").exists() and not str(host.root).startswith(control_folder)
