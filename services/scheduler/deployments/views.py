"""What people see of a deployment: its state (derived from its job's), its engine and limits, the engine's load
while it is ready, and its usage by user and adapter. Never the server's host, port or the model's files."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from services.common.contracts import DeploymentState


class LoadedAdapterOut(msgspec.Struct, kw_only=True):
    name: str
    loaded_at: datetime
    last_used_at: datetime
    requests: int  # since it was loaded


class LoadOut(msgspec.Struct, kw_only=True):
    """The engine as its agent last reported it (every few seconds while the deployment is ready)."""

    running: int  # requests the engine runs now
    waiting: int  # requests queued: in the engine and at the agent
    kv_cache_pct: float | None  # KV-cache in use, 0–100 (null: the engine does not say)
    adapters: list[LoadedAdapterOut]  # loaded now
    at: datetime  # when the report came


class UsageOut(msgspec.Struct, kw_only=True):
    """Requests of one user on one model of the deployment: its base (`adapter` null) or one adapter."""

    user: str | None  # their username (null: the account is gone)
    adapter: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    last_request_at: datetime


class DeploymentOut(msgspec.Struct, kw_only=True):
    """A deployment as its owner sees it: never the server's host, port or the model's files."""

    id: str
    model: str
    state: str  # a contracts.DeploymentState (a plain string in the OpenAPI document, as before)
    reason: str | None
    message: str | None
    generation: dict
    gpu_count: int
    idle_timeout_s: int
    idle_seconds_left: float | None
    requests_served: int
    tokens_generated: int
    created_at: datetime
    ready_at: datetime | None
    last_request_at: datetime | None
    finished_at: datetime | None
    uptime_s: float | None
    agent_id: str | None  # the agent's name (as on jobs), never its address
    engine: str | None  # vllm | llamafactory: which one serves it (null until it is ready)
    adapter_slots: int  # vLLM: adapters of its base held at once
    max_in_flight: int  # requests the engine runs at once
    max_queue: int  # requests waiting beyond those (more are answered 429)
    load: LoadOut | None  # while ready
    usage: list[UsageOut]  # by user and adapter, most recent first
    # admins only
    owner: str | None = None
    gpu_memory_mb: int | None = None


class DeploymentPage(msgspec.Struct, kw_only=True):
    items: list[DeploymentOut]
    next_cursor: str | None


def public_state(row) -> DeploymentState:
    job_state = row["job_state"]
    if job_state == "pending":
        return "queued"
    if job_state in ("dispatched", "running"):
        if row["cancel_requested"]:
            return "stopping"
        return "ready" if row["ready_at"] else "starting"
    return "failed" if job_state == "failed" else "stopped"


def to_out(row, admin_view: bool, now: datetime | None = None, usage: list | None = None) -> DeploymentOut:
    """`row`: deployments store's COLUMNS; `usage`: its usage rows (store.usage_of)."""
    now = now or datetime.now(UTC)
    state = public_state(row)
    left = None
    if state == "ready":
        since = row["last_request_at"] or row["ready_at"]
        left = round(max(0.0, row["idle_timeout_s"] - (now - since).total_seconds()), 1)
    end = row["finished_at"] or now
    uptime = round((end - row["ready_at"]).total_seconds(), 1) if row["ready_at"] else None
    extra = {}
    if admin_view:
        extra = {
            "owner": row["owner"],
            "gpu_memory_mb": (row["estimate"] or {}).get("per_gpu_mb", 0) * max(row["gpu_count"], 1)
            if row["gpu_count"]
            else 0,
        }
    return DeploymentOut(
        id=row["id"],
        model=row["model"],
        state=state,
        reason=row["reason"],
        message=row["message"] if state in ("failed", "stopped") else None,
        generation=row["generation"],
        gpu_count=row["gpu_count"],
        idle_timeout_s=row["idle_timeout_s"],
        idle_seconds_left=left,
        requests_served=row["requests_served"],
        tokens_generated=row["tokens_generated"],
        created_at=row["created_at"],
        ready_at=row["ready_at"],
        last_request_at=row["last_request_at"],
        finished_at=row["finished_at"],
        uptime_s=uptime,
        agent_id=row["agent_id"],
        engine=row["engine"],
        adapter_slots=row["adapter_slots"],
        max_in_flight=row["max_in_flight"],
        max_queue=row["max_queue"],
        load=load_out(row["engine_load"]) if state == "ready" else None,
        usage=[usage_out(u) for u in usage or ()],
        **extra,
    )


def load_out(stored: dict | None) -> LoadOut | None:
    """The stored load (`deployments.engine_load`); None when there is none, or it cannot be read as one."""
    if not stored:
        return None
    try:
        return msgspec.convert(stored, LoadOut, strict=False)
    except msgspec.ValidationError:
        return None


def usage_out(row) -> UsageOut:
    return UsageOut(
        user=row["user"],
        adapter=row["adapter"] or None,
        requests=row["requests"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        last_request_at=row["last_request_at"],
    )
