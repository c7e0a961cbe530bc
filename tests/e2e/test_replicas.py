"""Replicas side by side (issue 16, item 2): a second scheduler and a second gateway beside the stack's own, on the
same NATS and Postgres. Jobs submitted through either gateway are dispatched once each (the dispatcher's lock), a
log viewer on either gateway gets the same lines, and a gateway given both schedulers (LLMCT_SCHEDULER_URLS)
answers every request while one of them is killed: nothing was sent to the dead one, so the other takes it."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx
import pytest

from llmct.embedded import free_port, wait_until
from llmct.launcher import ServiceProcess
from tests.helpers import unique

from .helpers import TRAIN, login, read_logs, wait_for_state

pytestmark = pytest.mark.e2e


@pytest.fixture
def replicas(stack, tmp_path):
    """scheduler-2 on a port of its own, and gateway-2 forwarding to both schedulers in turn."""
    scheduler_port, gateway_port = free_port(), free_port()
    both = f"http://127.0.0.1:{stack.services['scheduler'].port},http://127.0.0.1:{scheduler_port}"
    second_scheduler = ServiceProcess("scheduler", scheduler_port, tmp_path / "scheduler-2.log")
    second_gateway = ServiceProcess("gateway", gateway_port, tmp_path / "gateway-2.log")
    second_scheduler.start({**stack.env, "LLMCT_SCHEDULER_PORT": str(scheduler_port)})
    wait_until(second_scheduler.healthy, timeout=60, what="scheduler-2")
    # Its own port names scheduler-2 only: without the list it would know no other.
    own = {"LLMCT_GATEWAY_PORT": str(gateway_port), "LLMCT_SCHEDULER_PORT": str(scheduler_port)}
    second_gateway.start({**stack.env, **own, "LLMCT_SCHEDULER_URLS": both})
    wait_until(second_gateway.healthy, timeout=60, what="gateway-2")
    yield second_scheduler, f"http://127.0.0.1:{gateway_port}"
    second_gateway.stop()
    second_scheduler.stop()


async def test_two_schedulers_and_two_gateways(stack, tiny_model, replicas):
    second_scheduler, second_gateway = replicas
    gateways = [stack.gateway_url, second_gateway]
    async with httpx.AsyncClient(base_url=gateways[0], timeout=30) as first:
        headers = await login(first, stack.invite_code, unique("replicas"))
    quick = {**TRAIN, "max_steps": 2, "save_steps": 2}

    async with httpx.AsyncClient(timeout=30) as http:
        ids = []
        for n in range(6):  # through either gateway, in turn
            key = {"Idempotency-Key": uuid.uuid4().hex}
            r = await http.post(f"{gateways[n % 2]}/api/jobs", json=quick, headers=headers | key)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])

        token = headers["Authorization"].split()[1]
        viewers = [
            read_logs(
                gateway.replace("http", "ws") + f"/api/jobs/{ids[0]}/logs",
                token,
                until=lambda ls: any("'loss'" in line["text"] for line in ls),
            )
            for gateway in gateways
        ]
        seen = await asyncio.gather(*viewers)
        shortest = min(len(lines) for lines in seen)
        first_lines, second_lines = ([(x["attempt"], x["seq"], x["text"]) for x in s[:shortest]] for s in seen)
        assert first_lines == second_lines, "viewers on either gateway see the same lines"

        # One scheduler killed: gateway-2 sends every request to the other (none may answer 503).
        second_scheduler.process.kill()
        second_scheduler.process.wait()
        answers = Counter()
        for _ in range(20):
            r = await http.get(f"{second_gateway}/api/jobs/{ids[1]}", headers=headers)
            answers[r.status_code] += 1
        r = await http.post(
            f"{second_gateway}/api/jobs", json=quick, headers=headers | {"Idempotency-Key": uuid.uuid4().hex}
        )
        answers[r.status_code] += 1
        ids.append(r.json()["id"])
        assert answers == Counter({200: 20, 201: 1}), answers

        for job_id in ids:
            async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as gw:
                job = await wait_for_state(gw, headers, job_id, {"succeeded", "failed", "cancelled"})
            assert job["state"] == "succeeded", job.get("message")
            dispatched = [event for event in job["history"] if event["state"] == "dispatched"]
            assert len(dispatched) == 1, f"{job_id} dispatched {len(dispatched)} times by two schedulers"
