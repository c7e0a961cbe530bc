"""The gateway forwards OpenAI's fine-tuning API (/v1/fine_tuning/*) to the scheduler, which hosts it: the gateway,
scheduler, registry and datasets services in-process on real ports, real NATS and Postgres. Errors come back in
OpenAI's shape, and an inference-only API key may not train."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from services.auth.store import insert_api_key
from services.common.security import new_api_key, new_id
from tests.integration.registry.helpers import make_preset, make_user

from .helpers import serving

pytestmark = pytest.mark.integration


async def api_key(pool, user_id: str, scope: str) -> dict:
    key, prefix, key_hash = new_api_key()
    async with pool.acquire() as conn:
        await insert_api_key(
            conn,
            key_id=new_id("key"),
            user_id=user_id,
            name=f"ft-{scope}",
            prefix=prefix,
            key_hash=key_hash,
            scope=scope,
            expires_at=None,
        )
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
async def gateway(settings, pool):
    from services.datasets.app import create_app as datasets_app
    from services.gateway.app import create_app as gateway_app
    from services.registry.app import create_app as registry_app
    from services.scheduler.app import create_app as scheduler_app

    async with serving(scheduler_app(settings), registry_app(settings), datasets_app(settings)) as urls:
        scheduler, registry, datasets = urls
        routes = {**settings.service_urls, "scheduler": (scheduler,), "registry": (registry,), "datasets": (datasets,)}
        async with serving(gateway_app(dataclasses.replace(settings, service_urls=routes))) as (url,):
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                yield client


async def test_the_gateway_forwards_fine_tuning_to_the_scheduler_in_openais_shape(gateway, settings, pool):
    user_id, _ = await make_user(pool, settings)
    full, inference = await api_key(pool, user_id, "full"), await api_key(pool, user_id, "inference")
    _, model = await make_preset(pool)

    r = await gateway.get("/v1/fine_tuning/jobs", headers=full)
    assert r.status_code == 200, r.text
    assert r.json() == {"object": "list", "data": [], "has_more": False}

    missing = "file-" + "0" * 24
    r = await gateway.post("/v1/fine_tuning/jobs", json={"model": model, "training_file": missing}, headers=full)
    assert r.status_code == 404, r.text
    assert r.json()["error"]["param"] == "training_file" and r.json()["error"]["type"] == "invalid_request_error"

    r = await gateway.get("/v1/fine_tuning/jobs/ftjob-" + "0" * 24 + "/events", headers=full)
    assert r.status_code == 404 and set(r.json()["error"]) == {"message", "type", "param", "code"}

    # An inference key trains nothing, but may read its fine-tuning jobs (the gateway resolves `ft:` names with it).
    refused = (
        ("POST", "/v1/fine_tuning/jobs"),
        ("GET", "/v1/fine_tuning/jobs/ftjob-" + "0" * 24 + "/events"),
        ("POST", "/v1/fine_tuning/jobs/ftjob-" + "0" * 24 + "/cancel"),
    )
    for method, path in refused:
        r = await gateway.request(method, path, json={"model": model, "training_file": missing}, headers=inference)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["type"] == "permission_error" and r.json()["error"]["code"] == "api_key_scope"
    assert (await gateway.get("/v1/fine_tuning/jobs", headers=inference)).status_code == 200
    r = await gateway.get("/v1/fine_tuning/jobs/ftjob-" + "0" * 24, headers=inference)
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error", r.text
