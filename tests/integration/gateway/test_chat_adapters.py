"""Chat with a LoRA adapter by its registry name on a deployment of its base (issue 17, items 3, 5 and 7): the
gateway, scheduler and registry in-process on real ports, real NATS and Postgres; the agent's part (beats, and
answers on its deployment's chat subject) played on the bus, since what the agent does with an adapter is its own
tests'. The gateway asks the registry who may use which adapter, sends the adapter and the caller on the NATS
request's headers, hides someone else's adapter as unknown, lists adapters in /v1/models and for the playground,
and relays a full queue's 429 with Retry-After. Issue 18: one model of /v1/models by id, and DELETE /v1/models/{id}
through the registry (its `ft:` names need the scheduler's fine-tuning jobs: tests/e2e/test_openai_finetuning.py)."""

from __future__ import annotations

import dataclasses
import json

import httpx
import msgspec
import openai
import pytest

from services.auth.store import insert_api_key
from services.common.contracts import AdapterRef, ChatFrames, Subjects
from services.common.security import new_api_key, new_id
from services.scheduler.jobs import store as jobs_store
from tests.helpers import eventually, unique
from tests.integration.registry.helpers import make_output, make_preset, make_user
from tests.integration.scheduler.helpers import connect_as

from .helpers import AgentPart, vllm_deployment

pytestmark = pytest.mark.integration

AGENT = "gateway-adapters-agent"
HI = [{"role": "user", "content": "hi"}]


@dataclasses.dataclass
class World:
    gateway: str
    agent: AgentPart
    base: str
    base_id: str
    deployment: str
    alice: tuple[str, dict]
    bob: tuple[str, dict]
    alice_lora: str
    alice_lora_path: str
    bob_lora: str


@pytest.fixture(scope="module")
async def world(settings, pool, nats_server):
    alice, bob = await make_user(pool, settings), await make_user(pool, settings)
    base_id, base = await make_preset(pool)
    alice_lora_id, alice_lora = await make_output(pool, alice[0], base_id, kind="lora")
    _, bob_lora = await make_output(pool, bob[0], base_id, kind="lora")  # private: Bob's alone
    async with vllm_deployment(settings, pool, nats_server, AGENT, alice, base) as (gateway, agent, deployment):
        yield World(
            gateway, agent, base, base_id, deployment, alice, bob, alice_lora, f"/out/{alice_lora_id}", bob_lora
        )


async def chat(world: World, headers: dict, model: str, **more) -> httpx.Response:
    async with httpx.AsyncClient(base_url=world.gateway, timeout=30) as client:
        return await client.post("/v1/chat/completions", json={"model": model, "messages": HI, **more}, headers=headers)


def last_request(world: World) -> tuple[str, dict, dict]:
    return world.agent.requests[-1]


async def test_an_adapter_by_name_goes_to_its_bases_deployment_with_the_adapter_and_the_caller(world):
    user_id, headers = world.alice
    r = await chat(world, headers, world.alice_lora)
    assert r.status_code == 200, r.text
    subject, sent, body = last_request(world)
    assert subject == Subjects.deploy_chat(AGENT, world.deployment)
    assert sent[ChatFrames.USER] == user_id
    ref = msgspec.json.decode(sent[ChatFrames.ADAPTER], type=AdapterRef)
    assert (ref.name, ref.adapter_path) == (world.alice_lora, world.alice_lora_path)
    assert body["model"] == world.alice_lora


async def test_the_base_by_id_or_name_names_the_caller_and_no_adapter(world):
    user_id, headers = world.alice
    for model in (world.deployment, world.base):
        r = await chat(world, headers, model)
        assert r.status_code == 200, r.text
        _, sent, _ = last_request(world)
        assert sent[ChatFrames.USER] == user_id and ChatFrames.ADAPTER not in sent


async def test_someone_elses_private_adapter_reads_as_an_unknown_model(world):
    """Bob's adapter, on Alice's deployment of its base (where her own adapter is served): the same 404 as a name
    nobody has, and nothing sent."""
    _, headers = world.alice
    assert (await chat(world, headers, world.alice_lora)).status_code == 200
    sent_before = len(world.agent.requests)
    refused = await chat(world, headers, world.bob_lora)
    unknown = await chat(world, headers, "no-such-adapter")
    assert refused.status_code == unknown.status_code == 404, refused.text
    assert refused.json()["error"]["code"] == "model_not_found"
    assert refused.json()["error"]["message"] == unknown.json()["error"]["message"].replace(
        "no-such-adapter", world.bob_lora
    )
    assert len(world.agent.requests) == sent_before


async def test_an_adapter_whose_base_the_caller_has_not_deployed_says_to_deploy_it(world):
    """Bob may use his adapter, but has no deployment of its base (Alice's is hers)."""
    _, headers = world.bob
    r = await chat(world, headers, world.bob_lora)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", r.text
    assert f"deploy its base '{world.base}'" in r.json()["error"]["message"]


async def test_models_list_the_deployment_and_the_adapters_the_caller_may_use_there(world, pool):
    """With an inference-only API key, as an OpenAI client would have: the registry's list is asked with it."""
    key, prefix, key_hash = new_api_key()
    async with pool.acquire() as conn:
        await insert_api_key(
            conn,
            key_id=new_id("key"),
            user_id=world.alice[0],
            name="gateway-adapters",
            prefix=prefix,
            key_hash=key_hash,
            scope="inference",
            expires_at=None,
        )
    async with openai.AsyncOpenAI(base_url=world.gateway + "/v1", api_key=key) as client:
        models = {m.id: m.model_dump() for m in (await client.models.list()).data}
    assert models[world.deployment]["parent"] is None and models[world.deployment]["root"] == world.base
    assert models[world.alice_lora]["parent"] == world.deployment
    assert models[world.alice_lora]["root"] == world.base
    assert world.bob_lora not in models


async def test_the_playground_lists_and_chats_with_an_adapter_of_its_deployment(world):
    user_id, headers = world.alice
    async with httpx.AsyncClient(base_url=world.gateway, timeout=30) as client:
        r = await client.get(f"/api/deployments/{world.deployment}/adapters", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json() == [{"name": world.alice_lora, "owner": r.json()[0]["owner"], "loaded": False}]
        body = {"messages": HI, "stream": False, "adapter": world.alice_lora}
        r = await client.post(f"/api/deployments/{world.deployment}/chat", json=body, headers=headers)
        assert r.status_code == 200, r.text
        _, sent, relayed = last_request(world)
        assert json.loads(sent[ChatFrames.ADAPTER])["name"] == world.alice_lora and sent[ChatFrames.USER] == user_id
        assert relayed["model"] == world.alice_lora and "adapter" not in relayed
        r = await client.post(
            f"/api/deployments/{world.deployment}/chat", json={**body, "adapter": world.bob_lora}, headers=headers
        )
        assert r.status_code == 404 and r.json()["error"]["field"] == "adapter", r.text
        r = await client.get(f"/api/deployments/{world.deployment}/adapters", headers=world.bob[1])
        assert r.status_code == 404, r.text  # not Bob's deployment


async def test_a_full_queue_is_a_429_with_retry_after_on_both_routes(world):
    _, headers = world.alice
    world.agent.queue_full = True
    try:
        r = await chat(world, headers, world.alice_lora)
        assert r.status_code == 429 and r.headers["retry-after"] == "7", r.text
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        async with httpx.AsyncClient(base_url=world.gateway, timeout=30) as client:
            body = {"messages": HI, "stream": False}
            r = await client.post(f"/api/deployments/{world.deployment}/chat", json=body, headers=headers)
        assert r.status_code == 429 and r.headers["retry-after"] == "7", r.text
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
    finally:
        world.agent.queue_full = False


async def test_the_agents_headers_come_from_the_gateway_never_from_a_client(world, nats_server):
    """A client's own `Llmct-User` and `Llmct-Adapter` are not passed on; and another agent may not publish a chat
    request (with headers of its choosing) on this agent's deployment subject."""
    user_id, headers = world.alice
    forged = {ChatFrames.USER: world.bob[0], ChatFrames.ADAPTER: '{"name": "x", "adapter_path": "/etc"}'}
    r = await chat_with_headers(world, {**headers, **forged}, world.base)
    assert r.status_code == 200, r.text
    _, sent, _ = last_request(world)
    assert sent[ChatFrames.USER] == user_id and ChatFrames.ADAPTER not in sent
    errors: list[str] = []
    other = await connect_as(nats_server, "gateway-adapters-other", errors)
    try:
        sent_before = len(world.agent.requests)
        await other.publish(Subjects.deploy_chat(AGENT, world.deployment), b"{}", headers=forged)
        await eventually(lambda: _said(errors, f'publish to "{Subjects.deploy_chat(AGENT, world.deployment)}"'))
        assert len(world.agent.requests) == sent_before
    finally:
        await other.close()


async def _said(errors: list[str], text: str) -> bool:
    return any(text in e for e in errors)


async def chat_with_headers(world: World, headers: dict, model: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=world.gateway, timeout=30) as client:
        return await client.post("/v1/chat/completions", json={"model": model, "messages": HI}, headers=headers)


def sdk(world: World, who: tuple[str, dict]) -> openai.AsyncOpenAI:
    token = who[1]["Authorization"].split()[1]
    return openai.AsyncOpenAI(base_url=world.gateway + "/v1", api_key=token, max_retries=0)


async def test_one_model_by_id_is_its_entry_in_the_list(world):
    async with sdk(world, world.alice) as client:
        adapter = await client.models.retrieve(world.alice_lora)
        assert (adapter.id, adapter.model_extra["parent"]) == (world.alice_lora, world.deployment)
        assert (await client.models.retrieve(world.deployment)).model_extra["root"] == world.base
        with pytest.raises(openai.NotFoundError) as refused:
            await client.models.retrieve(world.bob_lora)
        assert refused.value.body["code"] == "model_not_found"


async def test_the_caller_deletes_their_own_model_through_the_registry_and_no_one_elses(world, pool):
    """Through the official SDK: someone else's model reads as unknown (NotFoundError), a preset is refused
    (PermissionDeniedError), a model an unfinished job uses is kept (ConflictError); the owner's is unregistered, and
    is then no model to chat with."""
    mine_id, mine = await make_output(pool, world.alice[0], world.base_id, kind="lora")
    async with sdk(world, world.alice) as alice, sdk(world, world.bob) as bob:
        assert (await alice.chat.completions.create(model=mine, messages=HI)).choices[0].message.content
        with pytest.raises(openai.NotFoundError) as refused:
            await bob.models.delete(mine)
        assert refused.value.body["code"] == "model_not_found" and refused.value.body["param"] == "model"
        with pytest.raises(openai.PermissionDeniedError):
            await alice.models.delete(world.base)
        with pytest.raises(openai.NotFoundError):
            await alice.models.delete(unique("no-such-model"))
        job_id = await a_job_using(pool, world.alice[0], mine)
        with pytest.raises(openai.ConflictError) as in_use:
            await alice.models.delete(mine)
        assert "unfinished job" in in_use.value.body["message"]
        await pool.execute("UPDATE jobs SET state = 'cancelled', finished_at = now() WHERE id = $1", job_id)
        deleted = await alice.models.delete(mine)
        assert (deleted.id, deleted.object, deleted.deleted) == (mine, "model", True)
        assert await pool.fetchval("SELECT deleted_at IS NOT NULL FROM models WHERE id = $1", mine_id)
        with pytest.raises(openai.NotFoundError):
            await alice.models.delete(mine)

        async def gone() -> bool:  # the gateway's lookups keep an answer a second
            try:
                await alice.chat.completions.create(model=mine, messages=HI)
            except openai.NotFoundError:
                return True
            return False

        await eventually(gone)


async def test_a_read_only_or_inference_key_deletes_nothing(world, pool):
    mine_id, mine = await make_output(pool, world.alice[0], world.base_id, kind="lora")
    for scope in ("read_only", "inference"):
        key, prefix, key_hash = new_api_key()
        async with pool.acquire() as conn:
            await insert_api_key(
                conn,
                key_id=new_id("key"),
                user_id=world.alice[0],
                name=f"gateway-delete-{scope}",
                prefix=prefix,
                key_hash=key_hash,
                scope=scope,
                expires_at=None,
            )
        async with openai.AsyncOpenAI(base_url=world.gateway + "/v1", api_key=key, max_retries=0) as client:
            with pytest.raises(openai.PermissionDeniedError) as refused:
                await client.models.delete(mine)
            assert refused.value.body["code"] == "api_key_scope", scope
    assert not await pool.fetchval("SELECT deleted_at IS NOT NULL FROM models WHERE id = $1", mine_id)


async def a_job_using(pool, owner_id: str, model: str) -> str:
    """A training job from `model` that waits (it asks for more GPUs than any agent here has)."""
    job_id = new_id("job")
    async with pool.acquire() as conn, conn.transaction():
        await jobs_store.insert_job(
            conn,
            job_id=job_id,
            owner_id=owner_id,
            kind="train",
            priority=0,
            gpu_count=8,
            request={"base_model": model},
            config={},
            config_yaml="",
            stages=[],
            output_dir=f"/tmp/{job_id}",
            estimate={},
        )
    return job_id
