"""heartbeats: 1,000 simulated agents beating once a second into one scheduler, and a simulated day of history.

Phases, one run, real NATS (with its users) and Postgres:
1. baseline: a process that only receives and decodes the same heartbeats (bench/_beat_sink.py) — the least
   any consumer of this stream pays;
2. scheduler: the real scheduler as a process (`llmct service scheduler`) records them: batched upserts of
   the agents table, raw samples every LLMCT_METRICS_SAMPLE_S. Measured: CPU seconds of the scheduler and of
   Postgres per second of heartbeats, as a ratio to the baseline's; the staleness of the stalest agent
   (now − newest recorded `sent_at`) over time (keeping up = flat, not growing); beats recorded vs sent;
   NATS slow consumers;
3. simulated history: raw samples for `--sim-agents` agents × `--gpus` GPUs over `--sim-hours` hours (the rows
   the scheduler writes, generated in SQL), then one retention pass
   (services.scheduler.fleet.maintenance.apply_retention): its time, the rows per resolution, the tables' size,
   extrapolated to 1,000 agents and to a 90-day steady state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime

import nats

from services.common import contracts
from services.common.settings import from_env
from services.common.store import create_pool
from services.scheduler.fleet import store as agents_store
from services.scheduler.fleet.maintenance import apply_retention
from services.scheduler.settings import FleetSettings

from ._infra import CpuMeter, Infra, machine, print_table, ratio, write_results

DAY = 86_400


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agents", type=int, default=1000, help="simulated agents beating (default 1000)")
    p.add_argument("--gpus", type=int, default=2, help="GPUs per simulated agent (default 2)")
    p.add_argument("--every", type=float, default=1.0, help="seconds between an agent's beats (default 1)")
    p.add_argument("--seconds", type=float, default=60, help="measured seconds of the scheduler phase")
    p.add_argument("--warmup", type=float, default=10, help="seconds before measuring (registration of every agent)")
    p.add_argument("--baseline-seconds", type=float, default=30)
    p.add_argument("--sim-agents", type=int, default=200, help="agents in the simulated history (default 200)")
    p.add_argument("--sim-hours", type=float, default=48, help="hours of raw samples simulated (default 48)")
    p.add_argument("--keep", action="store_true", help="keep the throwaway folder")


def main(args: argparse.Namespace) -> None:
    with Infra("heartbeats", keep=args.keep) as infra:
        results = asyncio.run(run(args, infra))
    write_results("heartbeats", results)


class Fleet:
    """Simulated agents publishing heartbeats at a steady rate over one connection."""

    def __init__(self, nc, agents: int, gpus: int, every: float):
        self.nc, self.every, self.sent = nc, every, 0
        self.ids = [f"sim-{i:04d}" for i in range(agents)]
        self.gpus = gpus

    def beat(self, agent_id: str, tick: int) -> bytes:
        load = (tick * 7 + hash(agent_id)) % 100
        gpus = tuple(
            contracts.GpuStatus(
                index=i,
                name="Simulated H100",
                memory_total_mb=81_559,
                memory_used_mb=40_000 + load * 10,
                utilization_pct=float(load),
                temperature_c=40.0 + load / 4,
                power_w=100.0 + load * 3,
            )
            for i in range(self.gpus)
        )
        return contracts.encode(
            contracts.AgentHeartbeat(
                agent_id=agent_id,
                hostname=f"host-{agent_id}",
                sent_at=datetime.now(UTC),
                gpus=gpus,
                cpu_slots=0,
                cpu_pct=float(load),
                memory_total_mb=515_000,
                memory_used_mb=100_000 + load,
                running_jobs=("job_x",),
                free_gpu_slots=1,
                version="0.1.0",
                runtime="docker",
            )
        )

    async def run(self, seconds: float) -> None:
        """Every agent once per `every` seconds, spread in 10 slices so the load is even."""
        slices, tick = 10, 0
        per_slice = max(1, len(self.ids) // slices)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            part = self.ids[(tick % slices) * per_slice : (tick % slices + 1) * per_slice]
            for agent_id in part:
                await self.nc.publish(contracts.Subjects.agent_heartbeat(agent_id), self.beat(agent_id, tick))
                self.sent += 1
            tick += 1
            delay = start + tick * self.every / slices - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)


def slow_consumers(infra: Infra) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{infra.nats.monitor_port}/varz", timeout=2) as response:
        return json.load(response).get("slow_consumers", 0)


async def baseline(args, infra: Infra, nc) -> dict:
    sink = subprocess.Popen(
        [sys.executable, "-m", "bench._beat_sink", "--nats", infra.nats.url, "--seconds", str(args.baseline_seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout.readline().strip() == "ready"
    fleet = Fleet(nc, args.agents, args.gpus, args.every)
    await fleet.run(args.baseline_seconds + 1)
    out = json.loads(sink.stdout.readline())
    sink.wait()
    out["cpu_per_1k_beats_s"] = round(out["cpu_s"] / max(1, out["received"]) * 1000, 4)
    return out


async def lag(pool) -> dict:
    row = await pool.fetchrow(
        "SELECT count(*) AS agents, extract(epoch FROM now() - min(last_beat_at)) AS stalest, "
        "extract(epoch FROM now() - max(last_beat_at)) AS freshest FROM agents"
    )
    return {k: round(float(v), 3) if v is not None else None for k, v in dict(row).items()}


async def scheduler_phase(args, infra: Infra, nc, pool) -> dict:
    services = infra.start_services(("scheduler",))
    meter = CpuMeter(infra)
    fleet = Fleet(nc, args.agents, args.gpus, args.every)
    slow_before = slow_consumers(infra)
    publishing = asyncio.create_task(fleet.run(args.warmup + args.seconds))
    await asyncio.sleep(args.warmup)
    sent_before, cpu_before, t0 = fleet.sent, meter.snapshot(), time.perf_counter()
    lags = []
    while not publishing.done():
        await asyncio.sleep(5)
        lags.append({"t_s": round(time.perf_counter() - t0, 1), **await lag(pool)})
    cpu = CpuMeter.delta(cpu_before, meter.snapshot())
    wall, sent = time.perf_counter() - t0, fleet.sent - sent_before
    await asyncio.sleep(3)
    services["scheduler"].stop()  # its last flush writes the unfinished sample period
    recorded = await pool.fetchval("SELECT coalesce(sum(samples), 0) FROM agent_metrics")
    thirds = max(1, len(lags) // 3)
    return {
        "measured_wall_s": round(wall, 1),
        "beats_sent_measured": sent,
        "beats_per_s": round(sent / wall, 1),
        "beats_sent_total": fleet.sent,
        "beats_recorded_total": recorded,
        "agents_registered": await pool.fetchval("SELECT count(*) FROM agents"),
        "cpu_s": cpu,
        "scheduler_cpu_share_pct": round(cpu["service scheduler"] / wall * 100, 1),
        "postgres_cpu_share_pct": round(cpu.get("postgres (all backends)", 0) / wall * 100, 1),
        "scheduler_cpu_per_1k_beats_s": round(cpu["service scheduler"] / max(1, sent) * 1000, 4),
        "lag_series": lags,
        "stalest_first_third_s": round(sum(x["stalest"] for x in lags[:thirds]) / thirds, 2),
        "stalest_last_third_s": round(sum(x["stalest"] for x in lags[-thirds:]) / thirds, 2),
        "stalest_max_s": max(x["stalest"] for x in lags),
        "nats_slow_consumers": slow_consumers(infra) - slow_before,
    }


async def simulate_history(args, pool) -> dict:
    """Raw samples as the scheduler writes them, for sim_agents over sim_hours, then one retention pass."""
    settings = from_env(FleetSettings)
    steps = int(args.sim_hours * 3600 / settings.sample_s)
    await pool.execute("TRUNCATE agent_metrics, agent_gpu_metrics")
    t0 = time.perf_counter()
    await pool.execute(
        "INSERT INTO agent_metrics (agent_id, step_s, at, samples, cpu_pct, memory_used_mb, memory_total_mb, "
        "running_jobs) SELECT 'sim-' || a, 0, now() - make_interval(secs => s * $3::float8), 10, random() * 100, "
        "100000 + random() * 1000, 515000, 1 FROM generate_series(1, $1::int) a, generate_series(0, $2::int) s",
        args.sim_agents,
        steps,
        settings.sample_s,
        timeout=3600,
    )
    await pool.execute(
        "INSERT INTO agent_gpu_metrics (agent_id, step_s, at, gpu_index, samples, utilization_pct, memory_used_mb, "
        "memory_total_mb, temperature_c, power_w) "
        "SELECT 'sim-' || a, 0, now() - make_interval(secs => s * $3::float8), "
        "g, 10, random() * 100, 40000 + random() * 1000, 81559, 40 + random() * 25, 100 + random() * 300 "
        "FROM generate_series(1, $1::int) a, generate_series(0, $2::int) s, generate_series(0, $4::int - 1) g",
        args.sim_agents,
        steps,
        settings.sample_s,
        args.gpus,
        timeout=3600,
    )
    generated_s = time.perf_counter() - t0
    before = await _tiers(pool)
    t0 = time.perf_counter()
    await apply_retention(pool, settings)
    retention_s = time.perf_counter() - t0
    after_retention = await _tiers(pool)
    await pool.execute("VACUUM FULL agent_metrics", timeout=3600)
    await pool.execute("VACUUM FULL agent_gpu_metrics", timeout=3600)
    compact = await _tiers(pool)
    return {
        "sample_s": settings.sample_s,
        "generate_s": round(generated_s, 1),
        "before": before,
        "retention_pass_s": round(retention_s, 2),
        "after_retention": after_retention,
        "compacted": compact,
        "projection": project(compact, settings, args),
    }


async def _tiers(pool) -> dict:
    out = {}
    for table in ("agent_metrics", "agent_gpu_metrics"):
        rows = await pool.fetch(f"SELECT step_s, count(*) AS n FROM {table} GROUP BY 1 ORDER BY 1")
        out[table] = {"rows": {str(r["step_s"]): r["n"] for r in rows}}
    async with pool.acquire() as conn:
        for table, size in (await agents_store.table_sizes(conn)).items():
            out[table]["bytes"] = size
    return out


def project(compact: dict, settings: FleetSettings, args) -> dict:
    """Bytes per stored row (indexes included), times the rows 1,000 agents keep after one day and at 90 days."""
    out = {}
    per_sample = {"agent_metrics": 1, "agent_gpu_metrics": args.gpus}
    for table, info in compact.items():
        rows = sum(info["rows"].values())
        per_row = info["bytes"] / rows if rows else 0
        raw = DAY / settings.sample_s
        minute = (settings.minute_keep_s - settings.raw_keep_s) / 60
        hour = (settings.max_age_s - settings.minute_keep_s) / 3600
        k = per_sample[table] * 1000
        out[table] = {
            "bytes_per_row": round(per_row, 1),
            "one_day_1000_agents_gb": round(raw * k * per_row / 1e9, 2),
            "steady_90d_1000_agents_gb": round((raw + minute + hour) * k * per_row / 1e9, 2),
            "rows_per_agent_steady": round((raw + minute + hour) * per_sample[table]),
        }
    return out


async def run(args, infra: Infra) -> dict:
    results: dict = {"machine": machine(), "params": vars(args).copy()}
    nc = await nats.connect(infra.nats.url, pending_size=256 * 1024 * 1024)
    pool = await create_pool(infra.env["DATABASE_URL"])
    try:
        print(f"baseline: a bare subscriber, {args.agents} agents, {args.baseline_seconds:.0f} s ...", flush=True)
        results["baseline"] = await baseline(args, infra, nc)
        print(f"scheduler: {args.agents} agents, {args.warmup:.0f} s warm-up + {args.seconds:.0f} s ...", flush=True)
        results["scheduler"] = sched = await scheduler_phase(args, infra, nc, pool)
        print(f"simulated history: {args.sim_agents} agents x {args.sim_hours:.0f} h ...", flush=True)
        results["history"] = hist = await simulate_history(args, pool)
    finally:
        await nc.close()
        await pool.close()
    base = results["baseline"]
    print_table(
        "heartbeats into one scheduler",
        ["what", "value"],
        [
            ["beats/s (measured)", sched["beats_per_s"]],
            ["recorded / sent", f"{sched['beats_recorded_total']}/{sched['beats_sent_total']}"],
            ["scheduler CPU %", sched["scheduler_cpu_share_pct"]],
            ["postgres CPU %", sched["postgres_cpu_share_pct"]],
            ["scheduler CPU per 1k beats (s)", sched["scheduler_cpu_per_1k_beats_s"]],
            ["baseline CPU per 1k beats (s)", base["cpu_per_1k_beats_s"]],
            ["scheduler / baseline", ratio(sched["scheduler_cpu_per_1k_beats_s"], base["cpu_per_1k_beats_s"])],
            ["stalest agent, first third (s)", sched["stalest_first_third_s"]],
            ["stalest agent, last third (s)", sched["stalest_last_third_s"]],
            ["NATS slow consumers", sched["nats_slow_consumers"]],
        ],
    )
    print_table(
        "simulated history",
        ["table", "rows before", "rows after", "MB compacted", "B/row", "1k agents, 1 day GB", "1k agents, 90 d GB"],
        [
            [
                t,
                sum(hist["before"][t]["rows"].values()),
                json.dumps(hist["compacted"][t]["rows"]),
                round(hist["compacted"][t]["bytes"] / 1e6, 1),
                p["bytes_per_row"],
                p["one_day_1000_agents_gb"],
                p["steady_90d_1000_agents_gb"],
            ]
            for t, p in hist["projection"].items()
        ],
    )
    print(f"retention pass over {args.sim_hours:.0f} h of raw samples: {hist['retention_pass_s']} s")
    return results
