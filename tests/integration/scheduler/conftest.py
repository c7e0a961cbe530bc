"""Fixtures of the fleet tests: the scheduler in-process with short fleet timings, agents as real processes."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import stat
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from llmct.embedded import free_port, wait_until
from llmct.launcher import ServiceProcess
from services.common.security import issue_token, new_id
from services.common.settings import from_env
from services.scheduler.settings import FleetSettings

# Seconds, short enough for tests (docs/fleet.md has the defaults).
FLEET_ENV = {
    "LLMCT_AGENT_OFFLINE_S": "2",
    "LLMCT_AGENT_REMOVE_S": "3",
    "LLMCT_HEARTBEAT_FLUSH_S": "0.2",
    "LLMCT_FLEET_SWEEP_S": "0.3",
    "LLMCT_METRICS_SAMPLE_S": "0.5",
    "LLMCT_METRICS_RETENTION_EVERY_S": "3600",
    "LLMCT_CANCEL_GRACE_S": "2",
}


@pytest.fixture(scope="module")
def fleet_env(stack_env):
    saved = {k: os.environ.get(k) for k in FLEET_ENV}
    os.environ.update(FLEET_ENV)
    yield FLEET_ENV
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
async def scheduler(fleet_env, settings, owners):
    from services.scheduler.app import create_app

    fleet = from_env(FleetSettings, FLEET_ENV)  # the fleet's quick clock, on top of the session's settings
    async with AsyncTestClient(app=create_app(dataclasses.replace(settings, **dataclasses.asdict(fleet)))) as client:
        yield client


@pytest.fixture(scope="module")
def engine_bin(tmp_path_factory) -> Path:
    """A stand-in engine: `sleeper` runs a few seconds and succeeds, so a job holds its GPU for a while."""
    folder = tmp_path_factory.mktemp("engine-bin")
    script = folder / "sleeper"
    script.write_text("#!/bin/sh\necho sleeping\nsleep 4\necho done\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


@pytest.fixture(scope="module")
async def start_agent(stack_env, nats_server, engine_bin, tmp_path_factory, pool):
    """Start `llmct service agent` as a process with its own NATS user; stopped at the end of the module, and marked
    offline then: a later module's scheduler, with a longer offline threshold, would otherwise see a stopped agent
    as live for a while and place its jobs there (a job of test_reconcile once went to test_queue's last agent)."""
    started: list[ServiceProcess] = []
    ids: list[str] = []
    logs = tmp_path_factory.mktemp("agent-logs")

    def start(agent_id: str, gpus: int = 0, gpu_memory_mb: int = 24576, **extra: str) -> ServiceProcess:
        creds = nats_server.add_agent(agent_id)
        env = {
            **os.environ,
            **stack_env,
            "LLMCT_AGENT_ID": agent_id,
            "LLMCT_AGENT_NATS_USER": creds["NATS_USER"],
            "LLMCT_AGENT_NATS_PASSWORD": creds["NATS_PASSWORD"],
            "LLMCT_AGENT_PORT": str(free_port()),
            "LLMCT_HEARTBEAT_S": "0.3",
            "LLMCT_RUNTIME": "process",
            "LLMCT_ENGINE_BIN": str(engine_bin),
            "LLMCT_VLLM_BIN": str(engine_bin),  # no vLLM there: a deployment runs the module's stand-in engine too
            "LLMCT_SIMULATED_GPUS": str(gpus),
            "LLMCT_SIMULATED_GPU_MEMORY_MB": str(gpu_memory_mb),
            "LLMCT_CPU_SLOTS": "0",
            **extra,
        }
        agent = ServiceProcess(name="agent", port=int(env["LLMCT_AGENT_PORT"]), log_path=logs / f"{agent_id}.log")
        started.append(agent.start(env))
        ids.append(agent_id)
        wait_until(agent.healthy, timeout=60, what=f"agent {agent_id}", interval=0.1)
        return agent

    yield start
    for agent in started:
        agent.stop()
    await asyncio.sleep(1)  # a beat sent while stopping is flushed (every 0.2 s here) before, never after, this
    await pool.execute("UPDATE agents SET offline_since = now() WHERE id = ANY($1) AND offline_since IS NULL", ids)


@pytest.fixture(scope="module")
async def people(settings, pool):
    """An admin and two users, with tokens; returns {name: (user_id, headers)}."""
    from services.auth.store import insert_user

    out = {}
    for name, role in (("fleet-admin", "admin"), ("fleet-owner", "user"), ("fleet-other", "user")):
        user_id = new_id("usr")
        await insert_user(pool, user_id=user_id, username=f"{name}-{user_id[-6:]}", password_hash="!test", role=role)
        token, _, _ = issue_token(settings.secret_key, user_id=user_id, username=name, role=role, ttl_s=3600)
        out[name] = (user_id, {"Authorization": f"Bearer {token}"})
    return out
