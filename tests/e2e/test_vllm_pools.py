"""Issue 17 through the whole platform: vLLM (its CPU build, .venv-vllm) serving a base model and, from one
deployment, every LoRA adapter of it the caller may use, loaded on first use and evicted beyond the slots; the
official `openai` package by the adapters' registry names; the queue limit; usage per adapter."""

import asyncio

import httpx
import openai
import pytest

from .helpers import TRAIN, login, registered, unique, wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MESSAGES = [{"role": "user", "content": "What is the capital of Canada?"}]
POOL = {
    "model": "tiny-llama",
    "gpu_count": 0,  # no `engine`: "auto", which is vLLM where the agent has it
    "adapter_slots": 2,
    "max_in_flight": 2,
    "max_queue": 1,
    "generation": {"max_new_tokens": 8, "do_sample": False},
}


async def wait_deployment(gw, headers, deployment_id: str, states: set[str], timeout: float = 300) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await gw.get(f"/api/deployments/{deployment_id}", headers=headers)
        assert r.status_code == 200, r.text
        if r.json()["state"] in states:
            return r.json()
        assert asyncio.get_running_loop().time() < deadline, f"deployment stuck: {r.json()}"
        await asyncio.sleep(0.5)


async def train_adapter(gw, headers) -> str:
    r = await gw.post("/api/jobs", json={**TRAIN, "max_steps": 4, "save_steps": 4}, headers=headers)
    assert r.status_code == 201, r.text
    job = await wait_for_state(gw, headers, r.json()["id"], {"succeeded", "failed"})
    assert job["state"] == "succeeded", job
    return (await registered(gw, headers, job["id"]))["name"]


async def deployment_until(gw, headers, deployment_id: str, check, timeout: float = 30) -> dict:
    """The deployment once `check(it)` holds (usage and load come with the agent's next report)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        seen = (await gw.get(f"/api/deployments/{deployment_id}", headers=headers)).json()
        if check(seen):
            return seen
        assert asyncio.get_running_loop().time() < deadline, f"never held: {seen}"
        await asyncio.sleep(0.5)


def loaded(deployment: dict) -> dict[str, dict]:
    return {a["name"]: a for a in ((deployment.get("load") or {}).get("adapters") or [])}


async def test_one_vllm_deployment_serves_the_base_and_every_adapter_of_it(gw, stack, tiny_model):
    owner = await login(gw, stack.invite_code, unique("pool-owner"))
    token = owner["Authorization"].split()[1]
    first, second = await asyncio.gather(train_adapter(gw, owner), train_adapter(gw, owner))

    r = await gw.post("/api/deployments", json=POOL, headers=owner)
    assert r.status_code == 201, r.text
    dep = r.json()
    try:
        ready = await wait_deployment(gw, owner, dep["id"], {"ready", "failed"})
        assert ready["state"] == "ready" and ready["engine"] == "vllm", ready
        assert (ready["adapter_slots"], ready["max_in_flight"], ready["max_queue"]) == (2, 2, 1)

        client = openai.AsyncOpenAI(base_url=f"{stack.gateway_url}/v1", api_key=token, max_retries=0)
        models = {m.id: m for m in (await client.models.list()).data}
        assert {dep["id"], first, second} <= set(models), models
        assert models[first].model_extra["parent"] == dep["id"] == models[second].model_extra["parent"]
        assert models[dep["id"]].model_extra["parent"] is None

        # The base by the deployment's id and by its name; each adapter by its registry name, streamed and not.
        base = await client.chat.completions.create(model=dep["id"], messages=MESSAGES, max_tokens=6)
        assert base.usage.prompt_tokens > 0 and base.usage.completion_tokens > 0
        for name in (first, second):
            answer = await client.chat.completions.create(model=name, messages=MESSAGES, max_tokens=6)
            assert answer.choices[0].message.content is not None and answer.usage.completion_tokens > 0
            chunks = [
                c
                async for c in await client.chat.completions.create(
                    model=name, messages=MESSAGES, max_tokens=6, stream=True, stream_options={"include_usage": True}
                )
            ]
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert chunks[-1].usage.prompt_tokens > 0, "streamed requests count their prompt tokens"
        seen = await deployment_until(gw, owner, dep["id"], lambda d: {first, second} <= set(loaded(d)))
        assert seen["load"]["running"] >= 0 and seen["load"]["waiting"] >= 0

        # An adapter trained while the deployment runs is callable at once, no redeploy; with two slots, the least
        # recently used adapter makes room for it, and is loaded again when asked for.
        third = await train_adapter(gw, owner)
        answer = await client.chat.completions.create(model=third, messages=MESSAGES, max_tokens=4)
        assert answer.usage.completion_tokens > 0
        seen = await deployment_until(gw, owner, dep["id"], lambda d: third in loaded(d) and first not in loaded(d))
        assert len(loaded(seen)) <= 2
        answer = await client.chat.completions.create(model=first, messages=MESSAGES, max_tokens=4)
        assert answer.usage.completion_tokens > 0
        await deployment_until(gw, owner, dep["id"], lambda d: first in loaded(d) and len(loaded(d)) <= 2)

        # Beyond two running and one waiting: 429 with Retry-After, the SDK's RateLimitError.
        # (vLLM's own `min_tokens` keeps each request generating ~a second: the tiny model is otherwise done first)
        body = {"model": dep["id"], "messages": MESSAGES, "max_tokens": 600, "min_tokens": 600, "stream": False}
        async with httpx.AsyncClient(base_url=stack.gateway_url, headers=owner, timeout=120) as burst:
            answers = await asyncio.gather(*(burst.post("/v1/chat/completions", json=body) for _ in range(8)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses.count(200) >= 3 and 429 in statuses, (statuses, answers[0].text)
        refused = next(a for a in answers if a.status_code == 429)
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"

        # Usage per adapter: requests, prompt and completion tokens (streamed included).
        seen = await deployment_until(
            gw,
            owner,
            dep["id"],
            lambda d: {first, second, third, None} <= {u["adapter"] for u in d["usage"]},
        )
        usage = {u["adapter"]: u for u in seen["usage"]}
        assert usage[first]["requests"] >= 3 and usage[second]["requests"] >= 2 and usage[third]["requests"] >= 1
        assert all(u["prompt_tokens"] > 0 and u["completion_tokens"] > 0 for u in usage.values()), usage

        # Another user, even with a deployment of the same (public) base, cannot reach her private adapters: 404
        # as for a name that does not exist, and they are not in her /v1/models.
        other = await login(gw, stack.invite_code, unique("pool-outsider"))
        r = await gw.post(
            "/api/deployments", json={**POOL, "engine": "llamafactory", "adapter_slots": 4}, headers=other
        )
        assert r.status_code == 201, r.text
        theirs = r.json()["id"]
        try:
            await wait_deployment(gw, other, theirs, {"ready"})
            outsider = openai.AsyncOpenAI(
                base_url=f"{stack.gateway_url}/v1", api_key=other["Authorization"].split()[1], max_retries=0
            )
            with pytest.raises(openai.NotFoundError) as refused_error:
                await outsider.chat.completions.create(model=first, messages=MESSAGES, max_tokens=2)
            assert refused_error.value.body["code"] == "model_not_found"
            nowhere = unique("no-such-adapter")
            with pytest.raises(openai.NotFoundError) as unknown:
                await outsider.chat.completions.create(model=nowhere, messages=MESSAGES)
            assert unknown.value.body["message"].replace(nowhere, "X") == (
                refused_error.value.body["message"].replace(first, "X")
            ), "a private adapter is answered as a name that does not exist"
            assert not {first, second, third} & {m.id for m in (await outsider.models.list()).data}
        finally:
            await gw.post(f"/api/deployments/{theirs}/stop", headers=other)
    finally:
        await gw.post(f"/api/deployments/{dep['id']}/stop", headers=owner)
    stopped = await wait_deployment(gw, owner, dep["id"], {"stopped", "failed"})
    assert stopped["state"] == "stopped", stopped
