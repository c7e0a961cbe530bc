"""Request and response shapes of /api/webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

EventName = Literal[
    "job.succeeded",
    "job.failed",
    "job.cancelled",
    "checkpoint.saved",
    "deployment.ready",
    "deployment.stopped",
    "deployment.failed",
    "agent.offline",
]
Url = Annotated[str, Meta(min_length=1, max_length=2048, description="http(s) URL deliveries are POSTed to")]
Events = Annotated[list[EventName], Meta(min_length=1, max_length=16)]
Description = Annotated[str, Meta(max_length=200)]
DeliveryState = Literal["pending", "delivered", "failed"]


class WebhookCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: Url
    events: Events
    description: Description = ""
    enabled: bool = True
    fleet: bool = False  # admins: this endpoint may receive fleet events (agent.offline)


class WebhookPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: Url | UnsetType = UNSET
    events: Events | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET
    fleet: bool | UnsetType = UNSET


class Webhook(msgspec.Struct, kw_only=True):
    """An endpoint as its owner sees it; its secret is never shown again after creation (or a rotation)."""

    id: str
    url: str
    events: list[str]
    description: str
    enabled: bool
    fleet: bool
    created_at: datetime
    updated_at: datetime


class WebhookCreated(Webhook, kw_only=True):
    secret: str  # `whsec_<base64>`: shown once; verify deliveries with it


class WebhookSecret(msgspec.Struct, kw_only=True):
    id: str
    secret: str


class WebhookPage(msgspec.Struct, kw_only=True):
    items: list[Webhook]
    next_cursor: str | None = None


class Delivery(msgspec.Struct, kw_only=True):
    """One message to an endpoint (its id is the `webhook-id` header) and what its last attempt got."""

    id: str
    event_type: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None  # pending only: when it is tried next
    last_status_code: int | None
    last_error: str | None
    last_latency_ms: int | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]


class DeliveryPage(msgspec.Struct, kw_only=True):
    items: list[Delivery]
    next_cursor: str | None = None


def webhook_out(row) -> Webhook:
    return Webhook(
        id=row["id"],
        url=row["url"],
        events=list(row["events"]),
        description=row["description"],
        enabled=row["enabled"],
        fleet=row["fleet"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def delivery_out(row) -> Delivery:
    fields = {name: row[name] for name in Delivery.__struct_fields__ if name != "next_attempt_at"}
    return Delivery(**fields, next_attempt_at=row["next_attempt_at"] if row["state"] == "pending" else None)
