"""The outbox: a state change and the deliveries it owes, written in the same transaction.

Each function is one INSERT … SELECT into webhook_deliveries over the endpoints that asked for the event, run by
the caller inside the transaction that records the change: a change that rolls back leaves no delivery, and one that
commits leaves its deliveries for the worker (delivery.py), whatever happens to this process afterwards. Payloads are
thin, like OpenAI's: the event's type and id, when, and the object's id; a receiver reads the rest from the API.
"""

from __future__ import annotations

from typing import Literal

from services.common.security import new_id

JOB_EVENTS = ("job.succeeded", "job.failed", "job.cancelled")
CHECKPOINT_EVENTS = ("checkpoint.saved",)
DEPLOYMENT_EVENTS = ("deployment.ready", "deployment.stopped", "deployment.failed")
FLEET_EVENTS = ("agent.offline",)
DEPLOYMENT_ENDS = {"failed": "deployment.failed", "succeeded": "deployment.stopped", "cancelled": "deployment.stopped"}
EVENTS = (*JOB_EVENTS, *CHECKPOINT_EVENTS, *DEPLOYMENT_EVENTS, *FLEET_EVENTS)
TEST_EVENT = "webhook.test"

ObjectKind = Literal["job", "deployment", "agent", "webhook_endpoint"]

# A fresh id in SQL, shaped like services.common.security.new_id's (a prefix and 16 hex digits).
_NEW_ID = "'{prefix}_' || left(replace(gen_random_uuid()::text, '-', ''), 16)"
_PAYLOAD = (
    "jsonb_build_object('type', $2::text, 'id', {event_id}, 'created_at', floor(extract(epoch FROM now()))::bigint, "
    "'data', jsonb_build_object('id', {object_id}, 'object', $3::text))"
)
_INSERT = "INSERT INTO webhook_deliveries (id, endpoint_id, event_type, payload) "


def job_event(kind: str, state: str) -> str | None:
    """The event a job (or deployment, kind 'deploy') entering `state` is, if any."""
    if kind == "deploy":
        return DEPLOYMENT_ENDS.get(state)
    return f"job.{state}" if f"job.{state}" in JOB_EVENTS else None


async def for_owner(conn, owner_id: str, event: str, kind: ObjectKind, object_id: str) -> int:
    """Deliveries of `event` about `object_id` to every enabled endpoint of `owner_id` that asked for it."""
    sql = (
        _INSERT
        + f"SELECT {_NEW_ID.format(prefix='msg')}, e.id, $2, "
        + _PAYLOAD.format(event_id="$5::text", object_id="$4::text")
        + " FROM webhook_endpoints e WHERE e.owner_id = $1 AND e.enabled AND $2 = ANY(e.events)"
    )
    return _count(await conn.execute(sql, owner_id, event, kind, object_id, _event_id()))


async def checkpoint_saved(conn, owner_id: str, job_id: str, data: dict) -> int:
    """`checkpoint.saved` deliveries about job `job_id` to its owner's endpoints that asked for it; `data` adds to
    the payload's `data` (the step; a fine-tuning job's OpenAI ids)."""
    sql = (
        _INSERT
        + f"SELECT {_NEW_ID.format(prefix='msg')}, e.id, $2, "
        + "jsonb_build_object('type', $2::text, 'id', $5::text, "
        "'created_at', floor(extract(epoch FROM now()))::bigint, "
        "'data', jsonb_build_object('id', $3::text, 'object', 'job') || $4::jsonb)"
        + " FROM webhook_endpoints e WHERE e.owner_id = $1 AND e.enabled AND $2 = ANY(e.events)"
    )
    return _count(await conn.execute(sql, owner_id, "checkpoint.saved", job_id, data, _event_id()))


async def agents_offline(conn, agent_ids: list[str]) -> int:
    """An `agent.offline` delivery per agent to every enabled fleet endpoint of an admin that asked for it."""
    if not agent_ids:
        return 0
    sql = (
        _INSERT
        + f"SELECT {_NEW_ID.format(prefix='msg')}, e.id, $2, "
        + _PAYLOAD.format(event_id=_NEW_ID.format(prefix="evt"), object_id="a.id")
        + " FROM unnest($1::text[]) AS a(id) CROSS JOIN webhook_endpoints e "
        "WHERE e.fleet AND e.enabled AND $2 = ANY(e.events) "
        "AND EXISTS (SELECT 1 FROM users u WHERE u.id = e.owner_id AND u.role = 'admin')"
    )
    return _count(await conn.execute(sql, agent_ids, "agent.offline", "agent"))


async def test_delivery(conn, endpoint_id: str) -> str:
    """A `webhook.test` delivery to this endpoint alone; its id."""
    sql = (
        _INSERT
        + f"SELECT {_NEW_ID.format(prefix='msg')}, e.id, $2, "
        + _PAYLOAD.format(event_id="$4::text", object_id="e.id")
        + " FROM webhook_endpoints e WHERE e.id = $1 RETURNING id"
    )
    return await conn.fetchval(sql, endpoint_id, TEST_EVENT, "webhook_endpoint", _event_id())


def _event_id() -> str:
    return new_id("evt")


def _count(status: str) -> int:
    """asyncpg's command tag `INSERT 0 <n>`: the rows written."""
    return int(status.rsplit(" ", 1)[-1])
