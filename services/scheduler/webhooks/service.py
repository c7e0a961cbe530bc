"""What /api/webhooks does: endpoints checked before they are stored, secrets shown once, tests and resends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from services.common.errors import ApiError, not_found
from services.common.security import Principal, new_id

from ..settings import SchedulerSettings
from . import outbox, store
from .addresses import Allowed, Refused, checked_address
from .secrets import endpoint_secret, new_salt
from .views import WebhookCreate, WebhookCreated, WebhookPatch, WebhookSecret, webhook_out

MAX_ENDPOINTS = 50  # per user: each event is one delivery per endpoint that asked for it


async def check_url(url: str, settings: SchedulerSettings) -> None:
    """422 naming `url` when deliveries could not go there (scheme, credentials, a refused address)."""
    try:
        await checked_address(url, Allowed.parse(settings.webhook_allow))
    except Refused as exc:
        raise ApiError(422, "invalid_field", f"url: {exc}", "url") from exc


def check_events(principal: Principal, events: Sequence[str], fleet: bool) -> None:
    """Fleet endpoints are admins'; fleet events go only to fleet endpoints."""
    if fleet and not principal.is_admin:
        raise ApiError(403, "forbidden", "only admins register fleet endpoints (agent events)", "fleet")
    fleet_asked = sorted(set(events) & set(outbox.FLEET_EVENTS))
    if fleet_asked and not fleet:
        raise ApiError(422, "invalid_field", f"{', '.join(fleet_asked)} needs a fleet endpoint (fleet: true)", "events")


async def owned(conn, principal: Principal, endpoint_id: str) -> asyncpg.Record:
    """The caller's endpoint; another's (admins' too) is as missing as one that never was."""
    row = await store.endpoint_of(conn, endpoint_id, principal.user_id)
    if row is None:
        raise not_found("webhook")
    return row


async def create(pool, settings: SchedulerSettings, principal: Principal, data: WebhookCreate) -> WebhookCreated:
    check_events(principal, data.events, data.fleet)
    await check_url(data.url, settings)
    salt = new_salt()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('webhook_endpoints:' || $1))", principal.user_id)
        if await store.count_of(conn, principal.user_id) >= MAX_ENDPOINTS:
            raise ApiError(409, "webhook_limit", f"you have {MAX_ENDPOINTS} webhook endpoints: delete one first")
        row = await store.insert_endpoint(
            conn,
            id=new_id("wh"),
            owner_id=principal.user_id,
            url=data.url,
            events=sorted(set(data.events)),
            secret_salt=salt,
            description=data.description,
            enabled=data.enabled,
            fleet=data.fleet,
        )
    shown = msgspec.structs.asdict(webhook_out(row))
    return WebhookCreated(**shown, secret=endpoint_secret(settings.secret_key, salt))


async def change(pool, settings: SchedulerSettings, principal: Principal, endpoint_id: str, data: WebhookPatch):
    changes: dict[str, Any] = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
    async with pool.acquire() as conn, conn.transaction():
        row = await owned(conn, principal, endpoint_id)
        merged = {**dict(row), **changes}
        check_events(principal, merged["events"], merged["fleet"])
        if "url" in changes:
            await check_url(changes["url"], settings)
        if "events" in changes:
            changes["events"] = sorted(set(changes["events"]))
        if changes:
            row = await store.update_endpoint(conn, endpoint_id, principal.user_id, changes)
    return webhook_out(row)


async def rotate(pool, settings: SchedulerSettings, principal: Principal, endpoint_id: str) -> WebhookSecret:
    """A new secret, at once: deliveries from now on are signed with it alone."""
    salt = new_salt()
    async with pool.acquire() as conn, conn.transaction():
        await owned(conn, principal, endpoint_id)
        await store.update_endpoint(conn, endpoint_id, principal.user_id, {"secret_salt": salt})
    return WebhookSecret(id=endpoint_id, secret=endpoint_secret(settings.secret_key, salt))


async def send_test(pool, principal: Principal, endpoint_id: str):
    async with pool.acquire() as conn, conn.transaction():
        row = await owned(conn, principal, endpoint_id)
        if not row["enabled"]:
            raise ApiError(409, "webhook_disabled", "the endpoint is disabled: enable it first (PATCH enabled: true)")
        delivery_id = await outbox.test_delivery(conn, endpoint_id)
        return await store.delivery_of(conn, endpoint_id, delivery_id)


async def resend(pool, principal: Principal, endpoint_id: str, delivery_id: str):
    """The delivery's event again, as a new message due now."""
    async with pool.acquire() as conn, conn.transaction():
        await owned(conn, principal, endpoint_id)
        delivery = await store.delivery_of(conn, endpoint_id, delivery_id)
        if delivery is None:
            raise not_found("delivery")
        return await store.copy_delivery(conn, delivery, new_id("msg"))
