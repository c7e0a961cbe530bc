"""A checkpoint of a fine-tuning job, chatted with by its `ft:…:ckpt-step-<n>` name (issue 18): unknown, saying how
to register it, until its owner registers it (POST /api/models/checkpoints, through the gateway); then the gateway
resolves the name to that model (asking the scheduler for the job and the registry for the model, with the caller's
credential) and a LoRA checkpoint answers on its owner's deployment of its base, the adapter named on the request. A
full checkpoint deploys like any model. The gateway, scheduler and registry in-process on real ports, real NATS and
Postgres; the agent's part played on the bus, as in test_chat_adapters.py."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import pytest

from services.common.contracts import AdapterRef, ChatFrames, Subjects
from tests.helpers import eventually
from tests.integration.registry.helpers import make_job, make_preset, make_user, write_adapter

from .helpers import AgentPart, vllm_deployment

pytestmark = pytest.mark.integration

AGENT = "gateway-checkpoint-agent"
HI = [{"role": "user", "content": "hi"}]


@dataclasses.dataclass
class World:
    gateway: str
    agent: AgentPart
    base: str
    deployment: str
    alice: tuple[str, dict]
    bob: tuple[str, dict]
    out: Path


async def fine_tuning_job(pool, owner_id: str, base: str, out: Path, finetuning_type: str = "lora") -> str:
    """A running fine-tuning job of `owner_id` on `base`, checkpoints 3 and 6 told saved: its `ftjob-` id."""
    request = {"base_model": base, "datasets": ["tiny_sft"], "finetuning_type": finetuning_type, "stage": "sft"}
    config = {"stage": "sft", "finetuning_type": finetuning_type, "output_dir": str(out)}
    job_id = await make_job(pool, owner_id, state="running", request=request, config=config)
    ftjob_id = "ftjob-" + secrets.token_hex(12)
    await pool.execute(
        "INSERT INTO fine_tuning_jobs (id, job_id, owner_id, model, training_file, suffix, seed, method) "
        "VALUES ($1, $2, $3, $4, 'file-x', 'bot', 1, $5)",
        ftjob_id,
        job_id,
        owner_id,
        base,
        {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
    )
    for step in (3, 6):
        await pool.execute(
            "INSERT INTO job_checkpoints (job_id, step, saved_at, attempt) VALUES ($1, $2, $3, 1)",
            job_id,
            step,
            datetime.now(UTC),
        )
    return ftjob_id


@pytest.fixture(scope="module")
async def world(settings, pool, nats_server, tmp_path_factory):
    alice, bob = await make_user(pool, settings), await make_user(pool, settings)
    _, base = await make_preset(pool)
    out = tmp_path_factory.mktemp("checkpoints")
    async with vllm_deployment(settings, pool, nats_server, AGENT, alice, base) as (gateway, agent, deployment):
        yield World(gateway, agent, base, deployment, alice, bob, out)


async def checkpoint_names(world: World, headers: dict, ftjob_id: str) -> dict[int, str]:
    async with httpx.AsyncClient(base_url=world.gateway, timeout=30) as client:
        r = await client.get(f"/v1/fine_tuning/jobs/{ftjob_id}/checkpoints", headers=headers)
    assert r.status_code == 200, r.text
    return {c["step_number"]: c["fine_tuned_model_checkpoint"] for c in r.json()["data"]}


async def chat(world: World, headers: dict, model: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=world.gateway, timeout=30) as client:
        return await client.post("/v1/chat/completions", json={"model": model, "messages": HI}, headers=headers)


async def register(world: World, headers: dict, job_id: str, step: int) -> httpx.Response:
    async with httpx.AsyncClient(base_url=world.gateway, timeout=30) as client:
        return await client.post("/api/models/checkpoints", json={"job_id": job_id, "step": step}, headers=headers)


async def test_a_lora_checkpoint_answers_by_its_name_once_registered(world, pool):
    user_id, headers = world.alice
    ftjob_id = await fine_tuning_job(pool, user_id, world.base, world.out / "alice")
    write_adapter(world.out / "alice" / "checkpoint-6")
    job_id = await pool.fetchval("SELECT job_id FROM fine_tuning_jobs WHERE id = $1", ftjob_id)
    name = (await checkpoint_names(world, headers, ftjob_id))[6]

    r = await chat(world, headers, name)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", r.text
    assert "POST /api/models/checkpoints" in r.json()["error"]["message"] and job_id in r.json()["error"]["message"]

    registered = await register(world, headers, job_id, 6)
    assert registered.status_code == 201, registered.text
    model = registered.json()
    sent_before = len(world.agent.requests)
    r = await eventually(lambda: _answered(world, headers, name))  # the gateway keeps a lookup's answer a second
    assert r.json()["model"] == name and len(world.agent.requests) == sent_before + 1, "answered by the name asked"
    subject, sent, body = world.agent.requests[-1]
    assert subject == Subjects.deploy_chat(AGENT, world.deployment) and sent[ChatFrames.USER] == user_id
    ref = msgspec.json.decode(sent[ChatFrames.ADAPTER], type=AdapterRef)
    assert (ref.name, ref.adapter_path) == (model["name"], str(world.out / "alice" / "checkpoint-6"))
    assert body["model"] == name, "relayed as asked: the adapter header names the model"

    # Step 3 is not registered: still unknown. Bob asking for Alice's checkpoint: as unknown as a name nobody has.
    assert (await chat(world, headers, name.replace("ckpt-step-6", "ckpt-step-3"))).status_code == 404
    theirs = await chat(world, world.bob[1], name)
    nobody = await chat(world, world.bob[1], name.replace(ftjob_id.removeprefix("ftjob-"), "f" * 24))
    assert theirs.status_code == nobody.status_code == 404
    assert theirs.json()["error"]["message"] == nobody.json()["error"]["message"].replace("f" * 24, ftjob_id[6:])
    assert (await register(world, world.bob[1], job_id, 6)).status_code == 404

    # Once the job succeeded, /v1/models lists the checkpoint by its name, served on the deployment of its base; the
    # caller deletes it by that name (its files stay with the job), and the name is unknown again.
    await pool.execute("UPDATE jobs SET state = 'succeeded', finished_at = now() WHERE id = $1", job_id)
    async with httpx.AsyncClient(base_url=world.gateway, timeout=30) as client:
        entry = await eventually(lambda: _listed(client, headers, name))
        assert (entry["parent"], entry["root"]) == (world.deployment, world.base)
        assert (await client.get(f"/v1/models/{name}", headers=headers)).json() == entry
        assert (await client.get(f"/v1/models/{name}", headers=world.bob[1])).status_code == 404
        assert (await client.delete(f"/v1/models/{name}", headers=world.bob[1])).status_code == 404
        r = await client.delete(f"/v1/models/{name}", headers=headers)
        assert r.status_code == 200 and r.json() == {"id": name, "object": "model", "deleted": True}, r.text
    assert await pool.fetchval("SELECT deleted_at IS NOT NULL FROM models WHERE id = $1", model["id"])


async def _listed(client: httpx.AsyncClient, headers: dict, name: str) -> dict | None:
    r = await client.get("/v1/models", headers=headers)
    assert r.status_code == 200, r.text
    return next((m for m in r.json()["data"] if m["id"] == name), None)


async def _answered(world: World, headers: dict, name: str) -> httpx.Response | None:
    r = await chat(world, headers, name)
    return r if r.status_code == 200 else None


async def test_a_full_checkpoint_deploys_like_any_model(world, pool):
    user_id, headers = world.bob
    ftjob_id = await fine_tuning_job(pool, user_id, world.base, world.out / "bob", finetuning_type="full")
    job_id = await pool.fetchval("SELECT job_id FROM fine_tuning_jobs WHERE id = $1", ftjob_id)
    model = (await register(world, headers, job_id, 3)).json()
    assert model["kind"] == "full" and model["details"]["checkpoint_step"] == 3
    async with httpx.AsyncClient(base_url=world.gateway, timeout=30) as client:
        r = await client.post("/api/deployments", json={"model": model["name"]}, headers=headers)
        unknown = await client.post("/api/deployments", json={"model": model["name"] + "-x"}, headers=headers)
        # The registry's yes comes before the fleet's check: with no GPU agent in the session, refused for that only.
        assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_model", unknown.text
        if r.status_code != 201:
            assert r.status_code == 422 and r.json()["error"]["code"] == "no_capacity", r.text
            return
        assert r.json()["model"] == model["name"]
        assert (await client.post(f"/api/deployments/{r.json()['id']}/stop", headers=headers)).status_code == 202
