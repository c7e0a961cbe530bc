"""/api/webhooks: a user's endpoints, their deliveries, a test and a resend (every route: the caller's own)."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from litestar import Controller, delete, get, patch, post
from litestar.params import Parameter

from services.common.dependencies import Injected
from services.common.errors import not_found
from services.common.security import Principal

from ..jobs.routes import cursor_after, next_cursor
from ..settings import SchedulerSettings
from . import service, store
from .views import (
    Delivery,
    DeliveryPage,
    DeliveryState,
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookPage,
    WebhookPatch,
    WebhookSecret,
    delivery_out,
    webhook_out,
)

Limit = Annotated[int, Parameter(ge=1, le=200)]


class WebhookController(Controller):
    path = "/api/webhooks"
    tags = ["webhooks"]

    @post("/", status_code=201, summary="Register an endpoint (its secret is in this answer only)")
    async def create(
        self, pool: asyncpg.Pool, settings: Injected[SchedulerSettings], principal: Principal, data: WebhookCreate
    ) -> WebhookCreated:
        return await service.create(pool, settings, principal, data)

    @get("/", summary="The caller's endpoints, newest first")
    async def list_webhooks(
        self, pool: asyncpg.Pool, principal: Principal, cursor: str | None = None, limit: Limit = 50
    ) -> WebhookPage:
        rows = await store.endpoints_of(pool, principal.user_id, cursor_after(cursor), limit + 1)
        return WebhookPage(items=[webhook_out(r) for r in rows[:limit]], next_cursor=next_cursor(rows, limit))

    @get("/{webhook_id:str}", summary="One of the caller's endpoints")
    async def detail(self, pool: asyncpg.Pool, principal: Principal, webhook_id: str) -> Webhook:
        return webhook_out(await service.owned(pool, principal, webhook_id))

    @patch("/{webhook_id:str}", summary="Change an endpoint's URL, events, description; enable or disable it")
    async def change(
        self,
        pool: asyncpg.Pool,
        settings: Injected[SchedulerSettings],
        principal: Principal,
        webhook_id: str,
        data: WebhookPatch,
    ) -> Webhook:
        return await service.change(pool, settings, principal, webhook_id, data)

    @delete("/{webhook_id:str}", status_code=204, summary="Delete an endpoint and its delivery log")
    async def remove(self, pool: asyncpg.Pool, principal: Principal, webhook_id: str) -> None:
        if not await store.delete_endpoint(pool, webhook_id, principal.user_id):
            raise not_found("webhook")

    @post("/{webhook_id:str}/rotate-secret", status_code=200, summary="A new secret (shown once), in use at once")
    async def rotate_secret(
        self, pool: asyncpg.Pool, settings: Injected[SchedulerSettings], principal: Principal, webhook_id: str
    ) -> WebhookSecret:
        return await service.rotate(pool, settings, principal, webhook_id)

    @get("/{webhook_id:str}/deliveries", summary="An endpoint's deliveries, newest first: state, answer, latency")
    async def deliveries(
        self,
        pool: asyncpg.Pool,
        principal: Principal,
        webhook_id: str,
        delivery_state: Annotated[
            DeliveryState | None, Parameter(query="state", description="only deliveries in this state")
        ] = None,
        cursor: str | None = None,
        limit: Limit = 50,
    ) -> DeliveryPage:
        async with pool.acquire() as conn:
            await service.owned(conn, principal, webhook_id)
            rows = await store.deliveries_of(conn, webhook_id, delivery_state, cursor_after(cursor), limit + 1)
        return DeliveryPage(items=[delivery_out(r) for r in rows[:limit]], next_cursor=next_cursor(rows, limit))

    @post(
        "/{webhook_id:str}/deliveries/{delivery_id:str}/resend",
        status_code=202,
        summary="Send a delivery's event again (a new message, due now)",
    )
    async def resend(self, pool: asyncpg.Pool, principal: Principal, webhook_id: str, delivery_id: str) -> Delivery:
        return delivery_out(await service.resend(pool, principal, webhook_id, delivery_id))

    @post("/{webhook_id:str}/test", status_code=202, summary="Send a `webhook.test` event to the endpoint")
    async def test(self, pool: asyncpg.Pool, principal: Principal, webhook_id: str) -> Delivery:
        return delivery_out(await service.send_test(pool, principal, webhook_id))
