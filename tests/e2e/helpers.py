"""Small helpers for talking to the running platform in tests."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import httpx
import nats
import websockets

from services.common import contracts


async def login(gw: httpx.AsyncClient, invite_code: str, username: str, password: str = "train-pass-2026") -> dict:
    """Register (if needed) and log in; returns headers carrying the token."""
    creds = {"username": username, "password": password}
    r = await gw.post("/api/auth/register", json={**creds, "invite_code": invite_code})
    assert r.status_code in (201, 409), r.text
    r = await gw.post("/api/auth/login", json=creds)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def wait_for_state(gw: httpx.AsyncClient, headers: dict, job_id: str, states: set[str], timeout: float = 240):
    """Poll the job until it reaches one of `states`; returns its detail."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = (await gw.get(f"/api/jobs/{job_id}", headers=headers)).json()
        if job["state"] in states:
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} stuck in {job['state']}: {job.get('message')}")
        await asyncio.sleep(0.5)


async def read_logs(ws_url: str, token: str, until, after: int = 0, timeout: float = 240) -> list[dict]:
    """Lines from the logs WebSocket until `until(lines)` is true."""
    lines: list[dict] = []
    async with asyncio.timeout(timeout):
        async with websockets.connect(f"{ws_url}?token={token}&after={after}") as ws:
            while not until(lines):
                frame = json.loads(await ws.recv())
                lines.extend(frame["lines"])
    return lines


async def admin_token(gw: httpx.AsyncClient, stack) -> str:
    r = await gw.post("/api/auth/login", json={"username": stack.admin_username, "password": stack.admin_password})
    return r.json()["access_token"]


async def register_gpu_agent(stack, agent_id: str, memory_mb: int = 24_576) -> None:
    """One heartbeat from a stand-in agent with one GPU: it registers (and goes offline a minute later, staying
    registered), so GPU jobs are accepted and wait for room instead of being refused."""
    nc = await nats.connect(stack.env["NATS_URL"])
    beat = contracts.AgentHeartbeat(agent_id=agent_id, hostname=agent_id, sent_at=datetime.now(UTC),
                                    gpus=(contracts.GpuStatus(index=0, name="NVIDIA A10", memory_total_mb=memory_mb),))
    await nc.publish(contracts.Subjects.agent_heartbeat(agent_id), contracts.encode(beat))
    await nc.flush()
    await nc.close()
    await asyncio.sleep(1)  # written in the scheduler's next batch
