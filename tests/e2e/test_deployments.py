"""Deployments through the whole platform: the real `llamafactory-cli api` on the tiny model, chat relayed
over NATS by the gateway, the playground route and the official `openai` client."""

import asyncio
import json

import httpx
import openai
import pytest

from .helpers import TRAIN, admin_token, login, registered, unique, wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# LLaMA-Factory's server (test_vllm_pools.py has vLLM, the default where an agent has it).
DEPLOY = {"model": "tiny-llama", "gpu_count": 0, "engine": "llamafactory", "generation": {"max_new_tokens": 8}}
MESSAGES = [{"role": "user", "content": "What is the capital of Canada?"}]


async def wait_deployment(gw, headers, deployment_id: str, states: set[str], timeout: float = 180) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await gw.get(f"/api/deployments/{deployment_id}", headers=headers)
        assert r.status_code == 200, r.text
        if r.json()["state"] in states:
            return r.json()
        assert asyncio.get_running_loop().time() < deadline, f"deployment stuck: {r.json()}"
        await asyncio.sleep(0.5)


async def deploy(gw, headers, **body) -> dict:
    r = await gw.post("/api/deployments", json={**DEPLOY, **body}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def stop(gw, headers, deployment_id: str) -> dict:
    r = await gw.post(f"/api/deployments/{deployment_id}/stop", headers=headers)
    assert r.status_code in (202, 409), r.text
    return await wait_deployment(gw, headers, deployment_id, {"stopped", "failed"})


def sse_events(text: str) -> list[str]:
    return [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]


async def test_deploy_chat_and_stop(gw, stack, tiny_model):
    owner_name = unique("deployer")
    owner = await login(gw, stack.invite_code, owner_name)
    token = owner["Authorization"].split()[1]
    dep = await deploy(gw, owner)
    assert dep["state"] in ("queued", "starting") and dep["model"] == tiny_model
    try:
        ready = await wait_deployment(gw, owner, dep["id"], {"ready", "failed"})
        assert ready["state"] == "ready", ready
        assert 0 < ready["idle_seconds_left"] <= ready["idle_timeout_s"] == 300
        assert "owner" not in ready or ready["owner"] is None, "admins' fields stay empty for users"
        assert not any(
            isinstance(v, str) and ("/" in v or ":" in v) for k, v in ready.items() if not k.endswith("_at")
        ), f"no host, port or path: {ready}"

        # The playground: server-sent events in OpenAI's chunk shape, ending with [DONE].
        r = await gw.post(f"/api/deployments/{dep['id']}/chat", json={"messages": MESSAGES}, headers=owner)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text
        events = sse_events(r.text)
        assert events[-1] == "[DONE]" and len(events) >= 3
        assert all(json.loads(e)["object"] == "chat.completion.chunk" for e in events[:-1])
        r = await gw.post(
            f"/api/deployments/{dep['id']}/chat", json={"messages": MESSAGES, "stream": False}, headers=owner
        )
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["role"] == "assistant", r.text

        # The official client, unchanged, pointed at the gateway.
        client = openai.AsyncOpenAI(base_url=f"{stack.gateway_url}/v1", api_key=token)
        models = await client.models.list()
        assert [m.id for m in models.data] == [dep["id"]]
        answer = await client.chat.completions.create(model=dep["id"], messages=MESSAGES, max_tokens=5)
        assert isinstance(answer.choices[0].message.content, str)
        assert answer.usage.completion_tokens > 0 and answer.usage.prompt_tokens > 0
        by_name = await client.chat.completions.create(model=tiny_model, messages=MESSAGES, max_tokens=3)
        assert by_name.model == dep["id"], "a model name resolves to the caller's deployment of it"
        pieces = [
            chunk
            async for chunk in await client.chat.completions.create(
                model=dep["id"], messages=MESSAGES, max_tokens=6, stream=True, stream_options={"include_usage": True}
            )
        ]
        text = "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)
        assert text and pieces[-1].usage.completion_tokens > 0
        with pytest.raises(openai.NotFoundError) as missing:
            await client.chat.completions.create(model="dep_nope", messages=MESSAGES)
        assert missing.value.body["code"] == "model_not_found"
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model=dep["id"], messages=[])

        # What the model server refuses or fails on comes back in the documented envelopes, never a bare 500
        # (issue 14: an image part sent to this text-only model answered `500 Internal Server Error`).
        image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
        body = {"model": dep["id"], "messages": [{"role": "user", "content": [image]}]}
        r = await gw.post("/v1/chat/completions", json=body, headers=owner)
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error", r.text
        r = await gw.post("/v1/chat/completions", json={"model": dep["id"], "messages": MESSAGES * 2}, headers=owner)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", r.text
        turns = {"messages": MESSAGES * 2, "stream": False}
        r = await gw.post(f"/api/deployments/{dep['id']}/chat", json=turns, headers=owner)
        assert r.status_code == 400 and set(r.json()["error"]) == {"code", "message", "field"}, r.text

        # One active deployment per user: the second request names the first.
        r = await gw.post("/api/deployments", json=DEPLOY, headers=owner)
        assert r.status_code == 409 and r.json()["error"]["code"] == "deployment_limit"
        assert dep["id"] in r.json()["error"]["message"]

        # Usage reaches the scheduler: requests served, the last request's time, the idle timer restarted.
        for _ in range(40):
            seen = (await gw.get(f"/api/deployments/{dep['id']}", headers=owner)).json()
            if seen["requests_served"] >= 5:
                break
            await asyncio.sleep(0.25)
        assert seen["requests_served"] >= 5 and seen["tokens_generated"] > 0 and seen["last_request_at"]

        # Admins see everyone's, with owner, agent and GPU memory held.
        admin = {"Authorization": f"Bearer {await admin_token(gw, stack)}"}
        listing = (await gw.get("/api/deployments", headers=admin, params={"active": "true"})).json()
        mine = next(d for d in listing["items"] if d["id"] == dep["id"])
        assert mine["owner"] == owner_name and mine["agent_id"] and mine["uptime_s"] >= 0

        # Nobody else reaches it, by any route.
        other = await login(gw, stack.invite_code, unique("deploy-outsider"))
        other_token = other["Authorization"].split()[1]
        assert (await gw.get(f"/api/deployments/{dep['id']}", headers=other)).status_code == 404
        assert (await gw.post(f"/api/deployments/{dep['id']}/stop", headers=other)).status_code == 404
        assert (await gw.get(f"/api/deployments/{dep['id']}/log", headers=other)).status_code == 404
        r = await gw.post(f"/api/deployments/{dep['id']}/chat", json={"messages": MESSAGES}, headers=other)
        assert r.status_code == 404, r.text
        r = await gw.post("/v1/chat/completions", json={"model": dep["id"], "messages": MESSAGES}, headers=other)
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", r.text
        r = await gw.post("/v1/chat/completions", json={"model": tiny_model, "messages": MESSAGES}, headers=other)
        assert r.status_code == 404, r.text
        assert (await gw.get("/v1/models", headers=other)).json()["data"] == []
        assert (await gw.get("/api/deployments", headers=other)).json()["items"] == []
        r = await gw.post("/v1/chat/completions", json={"model": dep["id"], "messages": MESSAGES})
        assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
        assert other_token
    finally:
        stopped = await stop(gw, owner, dep["id"])
    assert stopped["state"] == "stopped" and stopped["reason"] == "cancelled"
    r = await gw.post(f"/api/deployments/{dep['id']}/chat", json={"messages": MESSAGES}, headers=owner)
    assert r.status_code == 409 and r.json()["error"]["code"] == "model_not_running", r.text
    log = await gw.get(f"/api/deployments/{dep['id']}/log", headers=owner)
    assert log.status_code == 200 and "ready: the model server (llamafactory) answers" in log.text


async def test_an_idle_deployment_stops_itself(gw, stack, tiny_model):
    owner = await login(gw, stack.invite_code, unique("idle-deployer"))
    dep = await deploy(gw, owner, idle_timeout_s=10)
    ready = await wait_deployment(gw, owner, dep["id"], {"ready", "failed"})
    assert ready["state"] == "ready" and ready["idle_seconds_left"] <= 10, ready
    ended = await wait_deployment(gw, owner, dep["id"], {"stopped", "failed"}, timeout=40)
    assert ended["state"] == "stopped" and ended["reason"] == "idle_timeout", ended


async def test_an_adapter_is_served_on_its_base(gw, stack, tiny_model):
    owner = await login(gw, stack.invite_code, unique("adapter-deployer"))
    job = await wait_for_state(
        gw,
        owner,
        (await gw.post("/api/jobs", json={**TRAIN, "max_steps": 2, "save_steps": 2}, headers=owner)).json()["id"],
        {"succeeded", "failed"},
    )
    assert job["state"] == "succeeded", job["message"]
    adapter = await registered(gw, owner, job["id"])
    dep = await deploy(gw, owner, model=adapter["name"])
    try:
        ready = await wait_deployment(gw, owner, dep["id"], {"ready", "failed"})
        assert ready["state"] == "ready", ready
        config = (await gw.get(f"/api/jobs/{dep['id']}", headers=owner)).json()["config"]
        assert config["adapter_name_or_path"] == adapter["path"] and config["finetuning_type"] == "lora"
        r = await gw.post(
            f"/api/deployments/{dep['id']}/chat", json={"messages": MESSAGES, "stream": False}, headers=owner
        )
        assert r.status_code == 200, r.text
    finally:
        await stop(gw, owner, dep["id"])
    other = await login(gw, stack.invite_code, unique("adapter-thief"))
    r = await gw.post("/api/deployments", json={**DEPLOY, "model": adapter["name"]}, headers=other)
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_model", r.text


async def test_a_model_that_cannot_start_fails_with_its_reason(gw, stack, settings, tiny_model):
    admin = {"Authorization": f"Bearer {await admin_token(gw, stack)}"}
    broken = settings.storage.models / unique("broken-model")  # a preset's copy lies under the models folder
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{not json")
    name = unique("broken-model")
    r = await gw.post("/api/models", json={"name": name, "path": str(broken), "parameter_count": 1000}, headers=admin)
    assert r.status_code == 201, r.text
    owner = await login(gw, stack.invite_code, unique("broken-deployer"))
    dep = await deploy(gw, owner, model=name)
    ended = await wait_deployment(gw, owner, dep["id"], {"failed", "stopped"}, timeout=120)
    assert ended["state"] == "failed" and ended["reason"] and ended["reason"] != "cancelled", ended
    assert "last log lines" in ended["message"], ended["message"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"model": "no-such-model"}, "model"),
        ({"generation": {"temperature": 5}}, "generation.temperature"),
        ({"idle_timeout_s": 1}, "idle_timeout_s"),
        ({"config_overrides": {"model_name_or_path": "x"}}, "config_overrides.model_name_or_path"),
        ({"config_overrides": {"vllm_config": {"model": "evil/model"}}}, "config_overrides.vllm_config.model"),
        (
            {"config_overrides": {"sglang_config": {"trust_remote_code": True}}},
            "config_overrides.sglang_config.trust_remote_code",
        ),
        ({"config_overrides": {"max_new_tokens": {"a": 1}}}, "config_overrides.max_new_tokens"),
    ],
)
async def test_bad_deployments_are_refused(gw, stack, tiny_model, body, field):
    user = await login(gw, stack.invite_code, unique("deploy-bad-input"))
    r = await gw.post("/api/deployments", json={**DEPLOY, **body}, headers=user)
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text


async def test_openai_routes_refuse_malformed_requests(gw, stack):
    user = await login(gw, stack.invite_code, unique("openai-bad-input"))
    for body, status in [
        (b"{nope", 400),
        (b"[]", 400),
        (b'{"messages": []}', 400),
        (b'{"model": "x", "messages": "hi"}', 400),
    ]:
        r = await gw.post("/v1/chat/completions", content=body, headers={**user, "content-type": "application/json"})
        assert r.status_code == status and set(r.json()["error"]) == {"message", "type", "param", "code"}, r.text
    async with httpx.AsyncClient(base_url=stack.gateway_url) as bare:
        assert (await bare.get("/v1/models")).status_code == 401
