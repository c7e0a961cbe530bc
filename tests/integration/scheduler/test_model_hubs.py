"""A model's hub, from the registry to the engine's environment: jobs submitted through the scheduler's API (a
ModelScope-only preset, a local one), dispatched to an agent process whose stand-in engine prints the hub
variables it got. No hub is reachable here, so nothing is downloaded: the stand-in only shows what the real
engine would be told (tests/integration/engine/test_engine_hubs.py runs the real one)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from services.common.security import new_id
from services.datasets import store as datasets_store
from services.registry.presets import register_preset
from tests.helpers import eventually

pytestmark = pytest.mark.integration

NOTE = "# model hub: modelscope (the engine runs with USE_MODELSCOPE_HUB=1)"
AGENT = "hub-agent"


@pytest.fixture(scope="module")
def engine_bin(tmp_path_factory) -> Path:
    """A stand-in `llamafactory-cli` (used by start_agent): prints the hub variables and its YAML's first line."""
    folder = tmp_path_factory.mktemp("hub-engine-bin")
    script = folder / "llamafactory-cli"
    script.write_text(
        '#!/bin/sh\necho "hub=[${USE_MODELSCOPE_HUB}]"\necho "ms-cache=[${MODELSCOPE_CACHE}]"\n'
        'echo "first line: $(head -n 1 "$2")"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


@pytest.fixture(scope="module")
async def world(pool, start_agent, scheduler, people):
    """An agent with CPU slots (no other test agent has any, so the jobs go there) started with
    USE_MODELSCOPE_HUB=1 in its own environment, a ModelScope-only preset, a local preset and a public dataset."""
    suffix = new_id("x")[-8:]
    ms, local, dataset = f"ms-only-{suffix}", f"local-{suffix}", f"hub-data-{suffix}"
    await pool.execute(
        "INSERT INTO models (id, name, source, kind, visibility, ms_path, parameter_count) "
        "VALUES ($1, $2, 'preset', 'base', 'public', 'LLM-Research/Llama-3.2-1B-Instruct', 1000000)",
        new_id("mdl"),
        ms,
    )
    await register_preset(pool, name=local, path="/srv/models/local-copy", parameter_count=1_000_000)
    async with pool.acquire() as conn:
        await datasets_store.upsert_public_file(
            conn,
            dataset_id=new_id("ds"),
            name=dataset,
            fmt="alpaca",
            columns=json.dumps({"prompt": "instruction"}),
            tags="{}",
            file_name=f"{dataset}.json",
            files="[]",
            rows=1,
            size_bytes=1,
            checksum=None,
            signature=None,
            info=json.dumps({"file_name": f"{dataset}.json"}),
        )
    start_agent(AGENT, gpus=0, LLMCT_CPU_SLOTS="3", USE_MODELSCOPE_HUB="1")
    admin = people["fleet-admin"][1]

    async def registered():
        agents = (await scheduler.get("/api/agents", headers=admin)).json()["agents"]
        return any(a["id"] == AGENT and a["state"] == "online" for a in agents)

    await eventually(registered, timeout=30)
    return {"ms": ms, "local": local, "dataset": dataset}


def train(model: str, dataset: str) -> dict:
    return {"kind": "train", "base_model": model, "datasets": [dataset], "gpu_count": 0, "max_steps": 1}


async def finished_log(scheduler, headers, job_id: str) -> tuple[dict, str]:
    async def ended():
        job = (await scheduler.get(f"/api/jobs/{job_id}", headers=headers)).json()
        return job if job["state"] in ("succeeded", "failed", "cancelled") else None

    job = await eventually(ended, timeout=60)
    log = (await scheduler.get(f"/api/jobs/{job_id}/log", headers=headers)).text
    return job, log


async def test_the_preview_shows_the_hub_a_model_comes_from(scheduler, people, world):
    owner = people["fleet-owner"][1]
    r = await scheduler.post(
        "/api/jobs", params={"dry_run": "true"}, json=train(world["ms"], world["dataset"]), headers=owner
    )
    assert r.status_code == 200, r.text
    preview = r.json()
    assert preview["model_hub"] == "modelscope" and preview["config_yaml"].startswith(NOTE)
    assert preview["config"]["model_name_or_path"] == "LLM-Research/Llama-3.2-1B-Instruct"
    r = await scheduler.post(
        "/api/jobs", params={"dry_run": "true"}, json=train(world["local"], world["dataset"]), headers=owner
    )
    assert r.status_code == 200, r.text
    assert r.json()["model_hub"] is None and "model hub" not in r.json()["config_yaml"]


async def test_a_modelscope_model_runs_with_use_modelscope_hub_and_a_local_one_without(
    scheduler, people, world, settings
):
    owner = people["fleet-owner"][1]
    jobs = {}
    for which in ("ms", "local"):
        r = await scheduler.post("/api/jobs", json=train(world[which], world["dataset"]), headers=owner)
        assert r.status_code == 201, r.text
        jobs[which] = r.json()
    assert jobs["ms"]["model_hub"] == "modelscope" and jobs["local"]["model_hub"] is None

    job, log = await finished_log(scheduler, owner, jobs["ms"]["id"])
    assert job["state"] == "succeeded" and job["agent_id"] == AGENT, (job["reason"], job["message"])
    assert job["model_hub"] == "modelscope" and job["config_yaml"].startswith(NOTE)
    assert "hub=[1]" in log and f"first line: {NOTE}" in log
    assert f"ms-cache=[{settings.storage.hf_cache / 'modelscope'}]" in log

    job, log = await finished_log(scheduler, owner, jobs["local"]["id"])
    assert job["state"] == "succeeded" and job["agent_id"] == AGENT, (job["reason"], job["message"])
    assert "hub=[]" in log, "a local model: no hub, whatever the agent's own environment says"
    assert "hub=[1]" not in log and "first line: model hub" not in log


async def test_a_served_modelscope_model_runs_with_use_modelscope_hub(scheduler, people, world):
    owner = people["fleet-other"][1]  # one deployment per user
    r = await scheduler.post("/api/deployments", json={"model": world["ms"], "gpu_count": 0}, headers=owner)
    assert r.status_code == 201, r.text
    job, log = await finished_log(scheduler, owner, r.json()["id"])
    assert job["kind"] == "deploy" and job["agent_id"] == AGENT and job["model_hub"] == "modelscope"
    assert "hub=[1]" in log
