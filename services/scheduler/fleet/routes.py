"""HTTP routes of /api/agents (the fleet: admins see every agent, users a summary without hosts) and the GPU
series of one job (/api/jobs/{id}/gpu, its owner's)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec
from asyncpg import Pool
from litestar import Controller, get, post
from litestar.params import Parameter

from services.common.dependencies import Injected
from services.common.errors import ApiError, not_found
from services.common.security import Principal

from ..settings import SchedulerSettings
from . import store

NICE_STEPS = (10, 30, 60, 300, 900, 3600, 6 * 3600, 86_400)
TARGET_POINTS = 300
MAX_POINTS = 5000


class GpuOut(msgspec.Struct, kw_only=True):
    index: int
    name: str
    memory_total_mb: int
    memory_used_mb: int = 0
    utilization_pct: float = 0.0
    temperature_c: float | None = None
    power_w: float | None = None
    job_id: str | None = None  # the dispatched or running job holding it


class AgentOut(msgspec.Struct, kw_only=True):
    """One agent as admins see it: where it is, what it has, what it runs."""

    id: str
    hostname: str
    state: str  # online | offline | draining
    draining: bool
    version: str
    runtime: str
    engines: list[str]  # the serving engines it has (vllm, llamafactory; empty: an agent older than vLLM)
    first_seen: datetime
    last_seen: datetime
    last_beat_at: datetime | None
    offline_since: datetime | None
    gpus: list[GpuOut]
    cpu_slots: int
    cpu_slots_busy: int
    cpu_pct: float
    memory_total_mb: int
    memory_used_mb: int
    jobs: list[str]  # what the scheduler placed on it (dispatched or running)
    running_jobs: list[str]  # what the agent says it runs
    running_deployments: list[str]


class GpuModelCount(msgspec.Struct, kw_only=True):
    name: str
    memory_total_mb: int
    total: int
    free: int  # on agents that take new work, held by no job
    busy: int


class FleetSummary(msgspec.Struct, kw_only=True):
    """What anyone may know of the fleet: capacity by GPU model, no hosts or addresses."""

    agents_online: int
    gpus: list[GpuModelCount]
    cpu_slots_total: int
    cpu_slots_free: int
    engines: list[str]  # the serving engines of agents that take new work (what a deployment may ask for)


class FleetView(msgspec.Struct, kw_only=True):
    summary: FleetSummary
    agents: list[AgentOut] | None = None  # admins only


class HostPoint(msgspec.Struct, kw_only=True):
    at: datetime
    samples: int
    cpu_pct: float | None
    memory_used_mb: float | None
    memory_total_mb: float | None
    running_jobs: float | None


class GpuPoint(msgspec.Struct, kw_only=True):
    at: datetime
    samples: int
    utilization_pct: float | None
    memory_used_mb: float | None
    memory_total_mb: float | None
    temperature_c: float | None
    power_w: float | None


class GpuSeries(msgspec.Struct, kw_only=True):
    index: int
    points: list[GpuPoint]


class AgentMetrics(msgspec.Struct, kw_only=True):
    agent_id: str
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    step_s: int
    host: list[HostPoint]
    gpus: list[GpuSeries]


class JobGpu(msgspec.Struct, kw_only=True):
    """The GPUs one job held, over its run (empty for a CPU job or one never started)."""

    job_id: str
    agent_id: str | None
    gpu_ids: list[int]
    start: datetime | None = msgspec.field(name="from")
    end: datetime | None = msgspec.field(name="to")
    step_s: int
    gpus: list[GpuSeries]


def choose_step(span_s: float, sample_s: float, asked: int | None) -> int:
    """The bucket width: the caller's (within MAX_POINTS), else a round one giving about TARGET_POINTS."""
    if asked is not None:
        if asked < 1 or span_s / asked > MAX_POINTS:
            raise ApiError(
                422,
                "invalid_field",
                f"step must be at least 1 s and give at most {MAX_POINTS} points "
                f"over the range (at least {int(span_s // MAX_POINTS) + 1} s here)",
                "step",
            )
        return asked
    wanted = max(span_s / TARGET_POINTS, sample_s)
    return next((s for s in NICE_STEPS if s >= wanted), NICE_STEPS[-1])


def time_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """[from, to), the last hour by default; times without a zone are UTC."""
    end = _utc(end) or datetime.now(UTC)
    start = _utc(start) or end - timedelta(hours=1)
    if start >= end:
        raise ApiError(422, "invalid_field", "from must be before to", "from")
    return start, end


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def agent_out(row, held: list) -> AgentOut:
    """An agents row with the jobs the scheduler placed on it."""
    res = row["resources"] or {}
    by_gpu = {i: job["id"] for job in held for i in (job["gpu_ids"] or ())}
    gpus = [
        GpuOut(**{k: v for k, v in g.items() if k in GpuOut.__struct_fields__}, job_id=by_gpu.get(g["index"]))
        for g in row["gpus"]
    ]
    return AgentOut(
        id=row["id"],
        hostname=row["hostname"],
        state=row["state"],
        draining=row["draining"],
        version=row["version"],
        runtime=row["runtime"],
        engines=list(row["engines"] or ()),
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        last_beat_at=row["last_beat_at"],
        offline_since=row["offline_since"],
        gpus=gpus,
        cpu_slots=row["cpu_slots"],
        cpu_slots_busy=sum(1 for job in held if job["gpu_count"] == 0),
        cpu_pct=res.get("cpu_pct", 0.0),
        memory_total_mb=res.get("memory_total_mb", 0),
        memory_used_mb=res.get("memory_used_mb", 0),
        jobs=[job["id"] for job in held],
        running_jobs=res.get("running_jobs", []),
        running_deployments=res.get("running_deployments", []),
    )


def summarise(agents: list[AgentOut]) -> FleetSummary:
    """Counts by GPU model over agents that are not offline; free only where new work may go."""
    counts: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    cpu_total = cpu_free = online = 0
    engines: set[str] = set()
    for agent in agents:
        if agent.state == "offline":
            continue
        online += 1
        takes_work = agent.state == "online"
        engines.update(agent.engines if takes_work else ())
        for gpu in agent.gpus:
            tally = counts[(gpu.name, gpu.memory_total_mb)]
            tally[0] += 1
            tally[1] += takes_work and gpu.job_id is None
            tally[2] += gpu.job_id is not None
        cpu_total += agent.cpu_slots
        cpu_free += max(0, agent.cpu_slots - agent.cpu_slots_busy) if takes_work else 0
    gpus = [
        GpuModelCount(name=name, memory_total_mb=mb, total=t, free=f, busy=b)
        for (name, mb), (t, f, b) in sorted(counts.items())
    ]
    return FleetSummary(
        agents_online=online,
        gpus=gpus,
        cpu_slots_total=cpu_total,
        cpu_slots_free=cpu_free,
        engines=sorted(engines),
    )


def gpu_series(rows) -> list[GpuSeries]:
    series: dict[int, list[GpuPoint]] = defaultdict(list)
    for r in rows:
        series[r["gpu_index"]].append(GpuPoint(**{f: r[f] for f in GpuPoint.__struct_fields__}))
    return [GpuSeries(index=i, points=points) for i, points in sorted(series.items())]


async def load_agents(pool: Pool, settings: SchedulerSettings) -> list[AgentOut]:
    held: dict[str, list] = defaultdict(list)
    async with pool.acquire() as conn:
        rows = await store.list_agents(conn, settings.offline_after_s)
        for job in await store.held_slots(conn):
            held[job["agent_id"]].append(job)
    return [agent_out(row, held[row["id"]]) for row in rows]


async def _one_agent(pool: Pool, agent_id: str, row) -> AgentOut:
    if row is None:
        raise not_found("agent")
    async with pool.acquire() as conn:
        held = [job for job in await store.held_slots(conn) if job["agent_id"] == agent_id]
    return agent_out(row, held)


class AgentController(Controller):
    path = "/api/agents"
    tags = ["agents"]

    @get("/", summary="The fleet: a summary for everyone, every agent in full for admins")
    async def list_agents(self, pool: Pool, settings: Injected[SchedulerSettings], principal: Principal) -> FleetView:
        agents = await load_agents(pool, settings)
        return FleetView(summary=summarise(agents), agents=agents if principal.is_admin else None)

    @get("/{agent_id:str}", summary="One agent (admins)", opt={"admin": True})
    async def detail(self, pool: Pool, settings: Injected[SchedulerSettings], agent_id: str) -> AgentOut:
        async with pool.acquire() as conn:
            row = await store.get_agent(conn, agent_id, settings.offline_after_s)
        return await _one_agent(pool, agent_id, row)

    @post(
        "/{agent_id:str}/drain",
        status_code=200,
        summary="Drain an agent: no new work, running work finishes",
        opt={"admin": True},
    )
    async def drain(self, pool: Pool, settings: Injected[SchedulerSettings], agent_id: str) -> AgentOut:
        return await self._set_draining(pool, settings, agent_id, True)

    @post(
        "/{agent_id:str}/undrain",
        status_code=200,
        summary="Let a drained agent take new work again",
        opt={"admin": True},
    )
    async def undrain(
        self, pool: Pool, settings: Injected[SchedulerSettings], wake: asyncio.Event, agent_id: str
    ) -> AgentOut:
        agent = await self._set_draining(pool, settings, agent_id, False)
        wake.set()  # it may take queued work now
        return agent

    async def _set_draining(self, pool: Pool, settings: SchedulerSettings, agent_id: str, draining: bool) -> AgentOut:
        async with pool.acquire() as conn:
            row = await store.set_draining(conn, agent_id, draining, settings.offline_after_s)
        return await _one_agent(pool, agent_id, row)

    @get(
        "/{agent_id:str}/metrics",
        summary="An agent's resource history: host and per-GPU averages per step",
        opt={"admin": True},
    )
    async def metrics(
        self,
        pool: Pool,
        settings: Injected[SchedulerSettings],
        agent_id: str,
        start: Annotated[datetime | None, Parameter(query="from", description="ISO time; default an hour ago")] = None,
        end: Annotated[datetime | None, Parameter(query="to", description="ISO time; default now")] = None,
        step: Annotated[int | None, Parameter(description="bucket width in seconds; default ~300 points")] = None,
    ) -> AgentMetrics:
        start, end = time_range(start, end)
        step_s = choose_step((end - start).total_seconds(), settings.sample_s, step)
        async with pool.acquire() as conn:
            known = await store.get_agent(conn, agent_id, settings.offline_after_s)
            host = await store.host_series(conn, agent_id, start, end, step_s)
            gpus = await store.gpu_series(conn, agent_id, start, end, step_s)
        if known is None and not host:
            raise not_found("agent")
        return AgentMetrics(
            agent_id=agent_id,
            start=start,
            end=end,
            step_s=step_s,
            host=[HostPoint(**dict(r)) for r in host],
            gpus=gpu_series(gpus),
        )


class JobGpuController(Controller):
    path = "/api/jobs"
    tags = ["jobs"]

    @get("/{job_id:str}/gpu", summary="The GPUs a job held, over its run (the job's owner, or admins)")
    async def job_gpu(
        self,
        pool: Pool,
        settings: Injected[SchedulerSettings],
        principal: Principal,
        job_id: str,
        step: Annotated[int | None, Parameter(description="bucket width in seconds")] = None,
    ) -> JobGpu:
        async with pool.acquire() as conn:
            job = await store.job_placement(conn, job_id, None if principal.is_admin else principal.user_id)
            if job is None:
                raise not_found("job")
            start, end = job["started_at"], job["finished_at"] or datetime.now(UTC)
            gpu_ids = list(job["gpu_ids"] or [])
            if start is None or not gpu_ids or start >= end:
                return JobGpu(
                    job_id=job_id,
                    agent_id=job["agent_id"],
                    gpu_ids=gpu_ids,
                    start=start,
                    end=job["finished_at"],
                    step_s=0,
                    gpus=[],
                )
            step_s = choose_step((end - start).total_seconds(), settings.sample_s, step)
            rows = await store.gpu_series(conn, job["agent_id"], start, end, step_s, gpu_ids)
        return JobGpu(
            job_id=job_id,
            agent_id=job["agent_id"],
            gpu_ids=gpu_ids,
            start=start,
            end=end,
            step_s=step_s,
            gpus=gpu_series(rows),
        )
