"""Deployments and their serving engines (issue 17), the scheduler in-process against real NATS and Postgres: the
engines agents' heartbeats name, stored and shown; a deployment that asks for vLLM placed only where vLLM is (and
refused at submit while no online agent has it), `auto` preferring it; the engine, limits, load and usage by user
and adapter that agents report, kept and shown. Agents here are heartbeats only: nothing runs what is placed."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import msgspec
import nats
import pytest

from services.common import contracts
from services.common.contracts import Subjects
from services.registry.presets import register_preset
from services.scheduler.deployments import store as dstore
from tests.helpers import assert_error, eventually, unique

from .helpers import job_on

pytestmark = pytest.mark.integration

PLAIN, VLLM = unique("plain-agent"), unique("vllm-agent")
SLOTS = {PLAIN: 3, VLLM: 2}  # the plain agent is the least loaded: only the engine rule sends work elsewhere


@pytest.fixture(scope="module")
async def fleet(scheduler, nats_server, pool):
    """Heartbeats of the agents in the returned dict (agent id → engines), every 0.3 s while the module runs."""
    beating: dict[str, tuple[str, ...]] = {PLAIN: ("llamafactory", "sglang")}
    # Agents of earlier modules in this session (a real one with vLLM among them) have stopped, but stay online
    # until LLMCT_AGENT_OFFLINE_S passes: the fleet here is these heartbeats alone.
    await pool.execute("UPDATE agents SET offline_since = now() WHERE offline_since IS NULL")
    nc = await nats.connect(nats_server.url)
    task = asyncio.create_task(_beat_forever(nc, beating))
    await until_online(pool, PLAIN)
    yield beating
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await nc.close()
    await pool.execute("UPDATE agents SET offline_since = now() WHERE id = ANY($1::text[])", list(SLOTS))


async def _beat_forever(nc, beating: dict[str, tuple[str, ...]]) -> None:
    while True:
        for agent_id, engines in list(beating.items()):
            beat = contracts.AgentHeartbeat(
                agent_id=agent_id,
                hostname="engines-test",
                cpu_slots=SLOTS[agent_id],
                runtime="process",
                engines=engines,
                sent_at=datetime.now(UTC),
            )
            await nc.publish(Subjects.agent_heartbeat(agent_id), contracts.encode(beat))
        await asyncio.sleep(0.3)


async def until_online(pool, agent_id: str) -> None:
    async def online():
        return await pool.fetchval(
            "SELECT offline_since IS NULL AND last_seen > now() - interval '1 second' FROM agents WHERE id = $1",
            agent_id,
        )

    await eventually(online, timeout=15)


@pytest.fixture(scope="module")
async def world(pool, people):
    """A preset to deploy, and room for several deployments of the owner."""
    model = unique("engines-model")
    await register_preset(pool, name=model, path=f"/srv/models/{model}", parameter_count=1_000_000)
    owner_id = people["fleet-owner"][0]
    await pool.execute(
        "INSERT INTO user_quotas (user_id, max_deployments) VALUES ($1, 20) "
        "ON CONFLICT (user_id) DO UPDATE SET max_deployments = 20",
        owner_id,
    )
    yield model
    await pool.execute(
        "UPDATE jobs SET state = 'cancelled', finished_at = now() WHERE owner_id = $1 AND kind = 'deploy' "
        "AND state IN ('pending', 'dispatched', 'running')",
        owner_id,
    )


def deploy(model: str, **fields) -> dict:
    return {"model": model, "gpu_count": 0, **fields}


async def test_heartbeats_name_the_engines_and_the_fleet_shows_them(scheduler, people, fleet):
    admin, owner = people["fleet-admin"][1], people["fleet-owner"][1]
    agents = (await scheduler.get("/api/agents", headers=admin)).json()["agents"]
    [plain] = [a for a in agents if a["id"] == PLAIN]
    assert plain["engines"] == ["llamafactory"], "an engine the platform does not know is left out"
    summary = (await scheduler.get("/api/agents", headers=owner)).json()["summary"]
    assert "llamafactory" in summary["engines"] and "vllm" not in summary["engines"]


async def test_vllm_is_refused_at_submit_while_no_online_agent_has_it(scheduler, people, fleet, world):
    owner = people["fleet-owner"][1]
    r = await scheduler.post("/api/deployments", json=deploy(world, engine="vllm"), headers=owner)
    error = assert_error(r, 422, "engine_unavailable", "engine")
    assert "auto" in error["message"]


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"engine": "sglang"}, "engine"),
        ({"adapter_slots": 0}, "adapter_slots"),
        ({"adapter_slots": 65}, "adapter_slots"),
        ({"max_lora_rank": 4}, "max_lora_rank"),
        ({"max_lora_rank": 512}, "max_lora_rank"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"max_in_flight": 257}, "max_in_flight"),
        ({"max_queue": -1}, "max_queue"),
        ({"max_queue": 1025}, "max_queue"),
        ({"max_model_len": 32}, "max_model_len"),
        ({"max_model_len": 200_000}, "max_model_len"),
        ({"adapter_slots": "many"}, "adapter_slots"),
    ],
)
async def test_bad_serving_options_name_the_field(scheduler, people, world, fields, field):
    r = await scheduler.post("/api/deployments", json=deploy(world, **fields), headers=people["fleet-owner"][1])
    error = assert_error(r, 422, "invalid_field", field)
    assert "unknown field" not in error["message"], "a field the request knows, with a value out of its range"


async def test_vllm_goes_only_where_vllm_is_and_auto_prefers_it(scheduler, people, pool, fleet, world):
    owner = people["fleet-owner"][1]
    fleet[VLLM] = ("vllm", "llamafactory")
    await until_online(pool, VLLM)
    asked = {"adapter_slots": 8, "max_lora_rank": 16, "max_in_flight": 4, "max_queue": 0, "max_model_len": 512}
    r = await scheduler.post("/api/deployments", json=deploy(world, engine="vllm", **asked), headers=owner)
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["adapter_slots"], out["max_in_flight"], out["max_queue"]) == (8, 4, 0)
    assert out["engine"] is None and out["load"] is None and out["usage"] == [], "nothing serves it yet"
    [stage] = await pool.fetchval("SELECT stages FROM jobs WHERE id = $1", out["id"])
    assert stage["serve"] | asked == stage["serve"] and stage["serve"]["engine"] == "vllm"

    first = await placed_on(pool, out["id"])
    assert first == VLLM
    r = await scheduler.post("/api/deployments", json=deploy(world), headers=owner)  # engine: auto
    assert r.status_code == 201, r.text
    assert await placed_on(pool, r.json()["id"]) == VLLM, "auto: vLLM's agent first, though the other is idler"

    r = await scheduler.post("/api/deployments", json=deploy(world, engine="vllm"), headers=owner)
    assert r.status_code == 201, r.text  # an agent with vLLM is online: it waits for room there
    waiting = r.json()["id"]

    async def wait_reason():
        return await pool.fetchval("SELECT wait_reason FROM jobs WHERE id = $1 AND state = 'pending'", waiting)

    assert "agent with vLLM" in await eventually(wait_reason, timeout=15)
    r = await scheduler.post("/api/deployments", json=deploy(world, engine="llamafactory"), headers=owner)
    assert r.status_code == 201, r.text
    assert await placed_on(pool, r.json()["id"]) == PLAIN, "vLLM's agent is full; the waiting one stays waiting"
    assert await pool.fetchval("SELECT state FROM jobs WHERE id = $1", waiting) == "pending"


async def placed_on(pool, job_id: str) -> str:
    async def agent():
        return await pool.fetchval("SELECT agent_id FROM jobs WHERE id = $1 AND state = 'dispatched'", job_id)

    return await eventually(agent, timeout=15)


async def test_what_agents_report_is_kept_and_shown(scheduler, people, pool, nats_server, fleet, tmp_path):
    """Ready with its engine; usage rows added up by user and adapter (an unknown user left out); the last load
    while it is ready, gone when it ends, and not brought back by a late report."""
    owner_id, owner = people["fleet-owner"]
    admin = people["fleet-admin"][1]
    agent_id = PLAIN  # online (the jobs of an agent the scheduler does not know are failed): the job is put there
    deployment = await job_on(pool, owner_id, tmp_path, agent_id, attempt=1)
    await pool.execute("UPDATE jobs SET kind = 'deploy' WHERE id = $1", deployment)
    async with pool.acquire() as conn:
        await dstore.insert(
            conn, deployment_id=deployment, owner_id=owner_id, model="m", generation={}, idle_timeout_s=600
        )
    at = datetime.now(UTC) - timedelta(seconds=5)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()

    async def send(event) -> None:
        await js.publish(Subjects.job_status(agent_id, deployment), contracts.encode(event))

    def usage(requests: int, tokens: int, rows=(), load=None, when=at) -> contracts.DeploymentUsage:
        return contracts.DeploymentUsage(
            job_id=deployment,
            requests=requests,
            tokens=tokens,
            last_request_at=when,
            attempt=1,
            usage=rows,
            load=load,
        )

    adapter = contracts.LoadedAdapter(name="ad-1", loaded_at=at, last_used_at=at, requests=3)
    try:
        await send(contracts.DeploymentReady(job_id=deployment, agent_id=agent_id, at=at, attempt=1, engine="vllm"))
        await send(
            usage(
                3,
                30,
                (
                    contracts.UsageRow(
                        user_id=owner_id, adapter=None, requests=2, prompt_tokens=10, completion_tokens=20
                    ),
                    contracts.UsageRow(
                        user_id=owner_id, adapter="ad-1", requests=1, prompt_tokens=5, completion_tokens=10
                    ),
                    contracts.UsageRow(
                        user_id="usr_gone", adapter=None, requests=1, prompt_tokens=1, completion_tokens=1
                    ),
                ),
                contracts.EngineLoad(running=2, waiting=1, kv_cache_pct=12.5, adapters=(adapter,)),
            )
        )
        later = at + timedelta(seconds=2)
        rows = (
            contracts.UsageRow(user_id=owner_id, adapter="ad-1", requests=2, prompt_tokens=2, completion_tokens=5),
            contracts.UsageRow(
                user_id=owner_id, adapter="ad\x00-2", requests=-5, prompt_tokens=-1, completion_tokens=3
            ),
        )
        await send(usage(2, 5, rows, contracts.EngineLoad(running=1, waiting=0, adapters=(adapter,)), when=later))
        nul = msgspec.structs.replace(adapter, name="ad\x00-2")
        await send(
            usage(0, 0, load=contracts.EngineLoad(running=0, waiting=0, adapters=(nul,)), when=datetime.now(UTC))
        )

        async def shown():
            out = (await scheduler.get(f"/api/deployments/{deployment}", headers=owner)).json()
            return out if out["load"] and out["load"]["running"] == 0 else None

        out = await eventually(shown, timeout=15)
        assert (out["state"], out["engine"]) == ("ready", "vllm")
        assert (out["requests_served"], out["tokens_generated"]) == (5, 35)
        assert datetime.fromisoformat(out["last_request_at"]) == later, "a report of load alone is no request"
        assert [a["name"] for a in out["load"]["adapters"]] == ["ad-2"] and out["load"]["kv_cache_pct"] is None
        username = await pool.fetchval("SELECT username FROM users WHERE id = $1", owner_id)
        by_adapter = {u["adapter"]: u for u in out["usage"]}
        assert set(by_adapter) == {None, "ad-1", "ad-2"} and {u["user"] for u in out["usage"]} == {username}
        assert [by_adapter["ad-2"][k] for k in ("requests", "prompt_tokens", "completion_tokens")] == [0, 0, 3]
        assert [by_adapter["ad-1"][k] for k in ("requests", "prompt_tokens", "completion_tokens")] == [3, 7, 15]
        assert [by_adapter[None][k] for k in ("requests", "prompt_tokens", "completion_tokens")] == [2, 10, 20]
        assert datetime.fromisoformat(by_adapter["ad-1"]["last_request_at"]) == later
        assert out["usage"][-1]["adapter"] is None, "the most recently used first"
        page = (await scheduler.get("/api/deployments", headers=admin, params={"limit": 200})).json()
        [listed] = [d for d in page["items"] if d["id"] == deployment]
        assert listed["usage"] == out["usage"] and listed["load"] == out["load"] and listed["owner"] is not None

        await send(contracts.JobFinished(job_id=deployment, agent_id=agent_id, state="cancelled", attempt=1, at=at))

        async def ended():
            return await pool.fetchval(
                "SELECT j.state = 'cancelled' AND d.engine_load IS NULL FROM jobs j JOIN deployments d ON d.id = j.id "
                "WHERE j.id = $1",
                deployment,
            )

        await eventually(ended, timeout=15)
        await send(usage(1, 1, load=contracts.EngineLoad(running=5, waiting=5)))  # late: after its end
        await send(contracts.JobProgressed(job_id=deployment, step=1, total_steps=1, attempt=1, at=at))  # a marker

        async def marker_in():
            return await pool.fetchval("SELECT count(*) FROM job_progress WHERE job_id = $1", deployment)

        await eventually(marker_in, timeout=15)  # one stream, in order: the late report was handled before it
        assert await pool.fetchval("SELECT engine_load FROM deployments WHERE id = $1", deployment) is None
        out = (await scheduler.get(f"/api/deployments/{deployment}", headers=owner)).json()
        assert out["state"] == "stopped" and out["load"] is None and len(out["usage"]) == 3
    finally:
        await nc.close()
