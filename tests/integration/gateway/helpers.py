"""What the gateway's integration tests share: services in-process on real ports, and an agent's part played on
the real NATS (its heartbeats, and answers on its deployments' chat subject)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import nats
import uvicorn
from litestar import Litestar

from llmct.embedded import free_port
from services.common import contracts
from services.common.contracts import ChatFrames, Subjects
from services.common.security import new_id
from services.scheduler.deployments import store as deployments_store
from services.scheduler.jobs import store as jobs_store
from tests.helpers import eventually


@contextlib.asynccontextmanager
async def serving(*apps: Litestar) -> AsyncIterator[list[str]]:
    """Each app on a free port of this event loop; yields their base URLs, stops them at the end."""
    servers = [uvicorn.Server(uvicorn.Config(app, port=free_port(), log_level="warning")) for app in apps]
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    try:
        async with asyncio.timeout(60):
            while not all(server.started for server in servers):
                if any(task.done() for task in tasks):
                    raise RuntimeError("a service did not start: see its log")
                await asyncio.sleep(0.05)
        yield [f"http://127.0.0.1:{server.config.port}" for server in servers]
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class AgentPart:
    """The agent's side of the bus for deployments it serves: it beats (listing them), and answers each chat request
    with an OpenAI-shaped completion that echoes the request's `model`, or with a full queue's 429 when told to."""

    nc: object
    agent_id: str
    deployments: list[str] = field(default_factory=list)
    requests: list[tuple[str, dict, dict]] = field(default_factory=list)  # (subject, headers, body)
    queue_full: bool = False

    async def beat_forever(self) -> None:
        while True:  # no GPU and no CPU slot: nothing else is placed here
            beat = contracts.AgentHeartbeat(
                agent_id=self.agent_id,
                hostname="gateway-test",
                sent_at=datetime.now(UTC),
                running_deployments=tuple(self.deployments),
                runtime="process",
                engines=("vllm",),
            )
            await self.nc.publish(Subjects.agent_heartbeat(self.agent_id), contracts.encode(beat))
            await asyncio.sleep(0.3)

    async def answer(self, msg) -> None:
        body = json.loads(msg.data)
        self.requests.append((msg.subject, dict(msg.headers or {}), body))
        if self.queue_full:
            error = {"message": "the queue is full", "type": "rate_limit_error", "param": None}
            data = {"error": {**error, "code": "rate_limit_exceeded"}}
            headers = {ChatFrames.STATUS: "429", ChatFrames.RETRY_AFTER: "7", "Content-Type": "application/json"}
        else:
            headers = {ChatFrames.STATUS: "200", "Content-Type": "application/json"}
            message = {"role": "assistant", "content": f"hello from {body['model']}"}
            data = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            }
        await self.nc.publish(msg.reply, json.dumps(data).encode(), headers=headers)
        await self.nc.publish(msg.reply, b"", headers={ChatFrames.END: "1"})


async def running_deployment(pool, owner_id: str, model: str, agent_id: str) -> str:
    """A deployment of `model` placed on `agent_id` (as the dispatcher leaves it), running."""
    dep_id = new_id("dep")
    async with pool.acquire() as conn, conn.transaction():
        await jobs_store.insert_job(
            conn,
            job_id=dep_id,
            owner_id=owner_id,
            kind="deploy",
            priority=0,
            gpu_count=0,
            request={"model": model},
            config={},
            config_yaml="",
            stages=[],
            output_dir=f"/tmp/{dep_id}",
            estimate={},
        )
        await deployments_store.insert(
            conn, deployment_id=dep_id, owner_id=owner_id, model=model, generation={}, idle_timeout_s=3600
        )
        await conn.execute(
            "UPDATE jobs SET state = 'running', agent_id = $2, attempt = 1, dispatched_at = now(), "
            "started_at = now() WHERE id = $1",
            dep_id,
            agent_id,
        )
    return dep_id


@contextlib.asynccontextmanager
async def vllm_deployment(
    settings, pool, nats_server, agent_id: str, owner: tuple[str, dict], base: str
) -> AsyncIterator[tuple[str, AgentPart, str]]:
    """The scheduler, registry and gateway in-process; agent `agent_id`'s part played on the bus (beats, answers on
    its deployments' chat subject); `owner`'s vLLM deployment of `base` on it, ready. Yields (the gateway's URL, the
    agent's part, the deployment)."""
    from services.gateway.app import create_app as gateway_app
    from services.registry.app import create_app as registry_app
    from services.scheduler.app import create_app as scheduler_app

    nc = await nats.connect(nats_server.url)
    agent = AgentPart(nc, agent_id)
    sub = await nc.subscribe(Subjects.agent_deploy_all(agent_id), cb=agent.answer)
    beating = asyncio.create_task(agent.beat_forever())

    async def online() -> bool:
        query = "SELECT count(*) FROM agents WHERE id = $1 AND offline_since IS NULL"
        return bool(await pool.fetchval(query, agent_id))

    async def ready(gateway: str) -> bool:
        async with httpx.AsyncClient(base_url=gateway) as client:
            r = await client.get(f"/api/deployments/{deployment}", headers=owner[1])
        return r.status_code == 200 and r.json()["state"] == "ready" and r.json().get("engine") == "vllm"

    try:
        async with serving(scheduler_app(settings), registry_app(settings)) as (scheduler, registry):
            await eventually(online)  # else the sweep fails a deployment placed here as lost
            deployment = await running_deployment(pool, owner[0], base, agent_id)
            agent.deployments.append(deployment)
            urls = {**settings.service_urls, "scheduler": (scheduler,), "registry": (registry,)}
            async with serving(gateway_app(dataclasses.replace(settings, service_urls=urls))) as (gateway,):
                told = contracts.DeploymentReady(
                    job_id=deployment, agent_id=agent_id, at=datetime.now(UTC), attempt=1, engine="vllm"
                )
                await nc.jetstream().publish(Subjects.job_status(agent_id, deployment), contracts.encode(told))
                await eventually(lambda: ready(gateway))
                yield gateway, agent, deployment
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
        await sub.unsubscribe()
        await nc.close()
