"""What the gateway's integration tests share: services in-process on real ports, and an agent's part played on
the real NATS (its heartbeats, and answers on its deployments' chat subject)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import uvicorn
from litestar import Litestar

from llmct.embedded import free_port
from services.common import contracts
from services.common.contracts import ChatFrames, Subjects


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
