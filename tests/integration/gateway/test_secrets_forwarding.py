"""The gateway forwards /api/secrets to the scheduler (services/gateway/proxy.py ROUTES): both on real ports, real
NATS and Postgres. A value set through the gateway is never in an answer nor in either service's log lines, and an
inference-only key reaches none of it."""

from __future__ import annotations

import dataclasses
import logging

import httpx
import pytest

from services.auth.store import insert_api_key
from services.common.security import new_api_key, new_id
from tests.helpers import unique
from tests.integration.registry.helpers import make_user

from .helpers import serving

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def gateway(settings):
    from services.gateway.app import create_app as gateway_app
    from services.scheduler.app import create_app as scheduler_app

    async with serving(scheduler_app(settings)) as (scheduler,):
        routes = {**settings.service_urls, "scheduler": (scheduler,)}
        async with serving(gateway_app(dataclasses.replace(settings, service_urls=routes))) as (url,):
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                yield client


async def test_secrets_through_the_gateway_are_the_callers_own_and_never_echoed(gateway, settings, pool, caplog):
    caplog.set_level(logging.DEBUG)
    user_id, owner = await make_user(pool, settings)
    _, other = await make_user(pool, settings)
    value = unique("mlflow-password") + "-Xy7"
    put = await gateway.put("/api/secrets/mlflow_tracking_password", json={"value": value}, headers=owner)
    assert put.status_code == 200, put.text
    mine = (await gateway.get("/api/secrets", headers=owner)).json()["items"]
    theirs = (await gateway.get("/api/secrets", headers=other)).json()["items"]
    assert [item["set"] for item in mine] == [False, False, False, True]
    assert not any(item["set"] for item in theirs)
    assert (await gateway.delete("/api/secrets/mlflow_tracking_password", headers=other)).status_code == 404

    key, prefix, key_hash = new_api_key()
    await insert_api_key(
        pool,
        key_id=new_id("key"),
        user_id=user_id,
        name="chat-only",
        prefix=prefix,
        key_hash=key_hash,
        scope="inference",
        expires_at=None,
    )
    inference = {"Authorization": f"Bearer {key}"}
    for answer in (
        await gateway.get("/api/secrets", headers=inference),
        await gateway.put("/api/secrets/mlflow_tracking_password", json={"value": "x"}, headers=inference),
        await gateway.delete("/api/secrets/mlflow_tracking_password", headers=inference),
    ):
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "api_key_scope", answer.text
    assert (await gateway.delete("/api/secrets/mlflow_tracking_password", headers=owner)).status_code == 204
    assert value not in put.text and value not in caplog.text
