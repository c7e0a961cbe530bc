"""dispatch: submit → agent-ack latency and jobs/s through the real scheduler and the real agent Runner.

The engine is replaced by `InstantRuntime` (below), which implements the runtime protocol of
`services/agent/runtimes/base.py` and exits at once, so what is measured is the platform only:

    submit (job committed + job.submitted published)
      → JOBS consumer wakes the dispatcher → dispatch_pending (Postgres) → job.dispatch.<agent>
      → the agent's DISPATCH consumer → Runner._run → JobStarted on job.status.<agent>.<id>   ("agent-ack")

Everything is real: nats-server, Postgres (migrated), the scheduler's handlers/service, the agent's
Runner registered by the agent's own heartbeat function, a preset model row and a dataset entry.

Modes (each runs a short unloaded probe, one job in flight, then the load phase):
  inproc   scheduler dispatcher (services.scheduler.handlers' parts and consumers) in this process, submit by calling
           services.scheduler.jobs.service.submit directly
  gateway  scheduler and gateway as processes (launcher.start_services); submit = HTTP POST /api/jobs
           through the gateway with a bearer token (JWT check only, no argon2) - includes validation,
           config rendering and the proxy hop
  direct   as gateway, but POST straight to the scheduler's port

The baseline, measured in the same run: a raw nats-py request/reply round trip (and, for context,
a JetStream publish-ack and one `services.common.bus.consume` hop, the building blocks of the path).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import nats
from nats.js.api import StreamConfig

from services.agent.app import AgentContext, heartbeat
from services.agent.settings import AgentSettings
from services.common import contracts
from services.common.bus import connect_bus, consume, ensure_streams
from services.common.contracts import Subjects
from services.common.security import Principal, RevokedSessions
from services.common.store import create_pool

from ._infra import (
    CpuMeter,
    Infra,
    machine,
    make_user,
    print_table,
    public_tiny_datasets,
    ratio,
    summary_ms,
    token_for,
    write_results,
)

AIM_P99_MS = 50.0
AIM_JOBS_PER_S = 500.0
AGENT_ID = "bench-agent"
MODEL = "bench-instant-model"

REQUEST = {
    "kind": "train",
    "base_model": MODEL,
    "datasets": ["tiny_sft"],
    "stage": "sft",
    "finetuning_type": "lora",
    "gpu_count": 0,
    "max_steps": 1,
    "per_device_train_batch_size": 1,
    "gradient_accumulation_steps": 1,
    "cutoff_len": 64,
    "lora_rank": 4,
}


# --- the instant engine ---------------------------------------------------------------------------


class InstantRun:
    """An engine that has already exited, successfully, without printing anything."""

    async def lines(self):
        return
        yield  # an async generator that yields nothing

    async def wait(self):
        from services.agent.runtimes.base import ExitInfo

        return ExitInfo(exit_code=0)

    async def stop(self, grace_s: float) -> None:
        return None


class InstantRuntime:
    """Same protocol as services.agent.runtimes.base.Runtime; start() never fails."""

    name = "instant"

    async def start(self, spec) -> InstantRun:
        return InstantRun()

    async def cleanup(self) -> None:
        return None


# --- watching the bus -----------------------------------------------------------------------------


@dataclass
class Observer:
    """Timestamps (perf_counter, this process) of each job's dispatch, agent-ack and finish, seen on NATS."""

    dispatched: dict[str, float] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)
    waiters: dict[str, asyncio.Future] = field(default_factory=dict)

    async def attach(self, nc) -> None:
        await nc.subscribe(Subjects.JOB_STATUS_ALL, cb=self._on_status)
        await nc.subscribe("job.changed.>", cb=self._on_change)
        await nc.flush()

    async def _on_status(self, msg) -> None:
        now = time.perf_counter()
        event = contracts.decode(msg.data)
        if isinstance(event, contracts.JobStarted):
            self.started.setdefault(event.job_id, now)
            waiter = self.waiters.pop(event.job_id, None)
            if waiter and not waiter.done():
                waiter.set_result(now)
        elif isinstance(event, contracts.JobFinished):
            self.finished.setdefault(event.job_id, now)

    async def _on_change(self, msg) -> None:
        now = time.perf_counter()
        change = contracts.decode(msg.data)
        if isinstance(change, contracts.JobChanged) and change.state == "dispatched":
            self.dispatched.setdefault(change.job_id, now)

    async def wait_started(self, job_id: str, timeout: float) -> float:
        if job_id in self.started:
            return self.started[job_id]
        waiter = self.waiters.setdefault(job_id, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(waiter, timeout)


def _servers(url: str) -> list[str]:
    """NATS_URL as nats-py takes it: a cluster's is comma-separated, one URL per node."""
    return [part.strip() for part in url.split(",") if part.strip()]


# --- baseline -------------------------------------------------------------------------------------


async def nats_baseline(url: str, n: int, concurrency: int) -> dict:
    """Raw nats-py request/reply (a second connection answers), sequential and `concurrency` in flight."""
    payload = contracts.encode(
        contracts.JobSubmitted(
            job_id="job_0123456789abcdef", kind="train", owner_id="usr_x", submitted_at=datetime.now(UTC)
        )
    )
    responder, requester = await nats.connect(_servers(url)), await nats.connect(_servers(url))
    try:

        async def echo(msg) -> None:
            await msg.respond(msg.data)

        await responder.subscribe("bench.echo", cb=echo)
        await responder.flush()
        for _ in range(50):
            await requester.request("bench.echo", payload, timeout=5)
        sequential = []
        for _ in range(n):
            t0 = time.perf_counter()
            await requester.request("bench.echo", payload, timeout=5)
            sequential.append(time.perf_counter() - t0)
        loaded, gate = [], asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                t0 = time.perf_counter()
                await requester.request("bench.echo", payload, timeout=10)
                loaded.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        wall = time.perf_counter() - t0
        return {
            "sequential": summary_ms(sequential),
            "loaded": {**summary_ms(loaded), "per_s": round(n / wall, 1), "concurrency": concurrency},
        }
    finally:
        await requester.close()
        await responder.close()


async def building_blocks(url: str, n: int) -> dict:
    """JetStream publish-ack round trip, and one hop through services.common.bus.consume (the pull loop the
    scheduler and the agent use) when the consumer is idle, with the batch sizes the platform passes."""
    nc = await nats.connect(_servers(url))
    js = nc.jetstream()
    out: dict = {}
    try:
        await js.add_stream(StreamConfig(name="BENCH", subjects=["bench.js.>"]))
        payload = b"x" * 200
        for _ in range(20):
            await js.publish("bench.js.warm", payload)
        acks = []
        for _ in range(n):
            t0 = time.perf_counter()
            await js.publish("bench.js.ack", payload)
            acks.append(time.perf_counter() - t0)
        out["jetstream_publish_ack"] = summary_ms(acks)

        for batch in (1, 16, 256):
            subject = f"bench.js.hop{batch}"
            seen: dict[int, float] = {}
            got = asyncio.Event()

            async def handle(msg, seen=seen, got=got) -> None:
                seen[int(msg.data)] = time.perf_counter()
                await msg.ack()
                got.set()

            task = asyncio.create_task(
                consume(js, subject=subject, durable=f"bench-hop-{batch}", stream="BENCH", handle=handle, batch=batch)
            )
            await asyncio.sleep(0.3)  # the consumer is created and idle in its fetch
            hops = []
            for i in range(15):  # one message at a time, at random points of the consumer's fetch cycle
                got.clear()
                await asyncio.sleep(0.05 + (i * 0.137) % 0.9)
                t0 = time.perf_counter()
                await js.publish(subject, str(i).encode())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(got.wait(), 5)
                if i in seen:
                    hops.append(seen[i] - t0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            out[f"consume_hop_batch_{batch}"] = summary_ms(hops)
    finally:
        with contextlib.suppress(Exception):
            await js.delete_stream("BENCH")
        await nc.close()
    out.update(freeze_config_cost())
    return out


def freeze_config_cost(n: int = 300) -> dict:
    """CPU of freezing one job's config as YAML (services.scheduler.rendering.to_yaml, pure-Python SafeDumper) vs
    the same call with libyaml's CSafeDumper, which gives byte-identical text; a what-if for the report."""
    from pathlib import Path

    import msgspec
    import yaml

    from services.scheduler import rendering
    from services.scheduler.jobs.schemas import TrainRequest

    req = msgspec.convert(REQUEST, TrainRequest)
    config = rendering.render_train(
        req,
        model_path="/models/m",
        default_template="default",
        data_dir=Path("/data"),
        output_dir=Path("/output/job_0123456789abcdef"),
    )

    def c_dump() -> str:
        return yaml.dump(config, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True)

    out = {}
    for name, fn in (("to_yaml_pure_python", lambda: rendering.to_yaml(config)), ("to_yaml_libyaml_what_if", c_dump)):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = summary_ms(times[20:])
    out["to_yaml_identical_with_libyaml"] = rendering.to_yaml(config) == c_dump()
    return out


# --- the platform ---------------------------------------------------------------------------------


class Platform:
    """The agent side (real Runner + heartbeat) and whichever submitter a mode uses."""

    def __init__(self, infra: Infra, slots: int):
        self.infra = infra
        self.settings = infra.settings
        self.slots = slots
        self.observer = Observer()

    async def setup(self) -> None:
        from services.agent.runner import Runner
        from services.registry.presets import register_preset

        self.pool = await create_pool(self.settings.database_url)
        model_dir = self.settings.storage.models / MODEL
        model_dir.mkdir(parents=True, exist_ok=True)
        # The scheduler reads a local model's shape from its config.json on every submit (memory estimate).
        (model_dir / "config.json").write_text('{"hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 2048}')
        await register_preset(self.pool, name=MODEL, path=str(model_dir), parameter_count=1_000_000)
        async with self.pool.acquire() as conn:
            await public_tiny_datasets(conn, self.settings.storage.data)
        self.user_id = await make_user(self.pool, "bench-dispatch")
        self.principal = Principal(user_id=self.user_id, username="bench-dispatch", role="user", via="token")
        self.token = token_for(self.settings, self.user_id, "bench-dispatch")

        self.watch_nc = await nats.connect(_servers(self.settings.nats_url))
        await self.observer.attach(self.watch_nc)

        self.agent_nc = await connect_bus(self.settings.nats_url, "bench-agent")
        agent_js = self.agent_nc.jetstream()
        await ensure_streams(agent_js, self.settings.nats_replicas)
        self.runner = Runner(
            nc=self.agent_nc,
            js=agent_js,
            agent_id=AGENT_ID,
            runtime=InstantRuntime(),
            storage=self.settings.storage,
            engine_env={},
        )
        await self.runner.start()
        self.agent_js = agent_js
        self.beater = asyncio.create_task(self._beat_forever())

    def agent_context(self) -> AgentContext:
        """What the agent's heartbeat reads: its settings (this run's CPU slots) and its runner."""
        return AgentContext(
            settings=self.settings,
            nc=self.agent_nc,
            js=self.agent_js,
            store=None,
            revoked=RevokedSessions(),
            reconnected=[],
            runner=self.runner,
            agent=AgentSettings(agent_id=AGENT_ID, cpu_slots=self.slots),
        )

    async def set_slots(self, slots: int) -> None:
        """Announce a new CPU-slot count with a real heartbeat and wait until the scheduler stored it."""
        self.slots = slots
        for _ in range(200):
            await heartbeat(self.agent_context())
            await asyncio.sleep(0.1)
            if await self.pool.fetchval("SELECT cpu_slots FROM agents WHERE id = $1", AGENT_ID) == slots:
                return
        raise RuntimeError("the scheduler never recorded the agent's heartbeat (is a scheduler running?)")

    async def _beat_forever(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await heartbeat(self.agent_context())
            await asyncio.sleep(5)

    async def wait_idle(self, timeout: float = 120) -> None:
        """Until no job is pending, dispatched or running."""
        deadline = time.monotonic() + timeout
        active = "SELECT count(*) FROM jobs WHERE state NOT IN ('succeeded', 'failed', 'cancelled')"
        while await self.pool.fetchval(active):
            if time.monotonic() > deadline:
                raise RuntimeError("jobs are still active after the phase")
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        self.beater.cancel()
        await self.runner.stop()
        await self.agent_nc.drain()
        await self.watch_nc.close()
        await self.pool.close()


class InprocScheduler:
    """The scheduler's NATS side (its background parts: dispatcher, fleet, log relay; and its consumers) on this
    event loop, as its lifespan would run them."""

    async def start(self, settings) -> None:
        from services.common.lifecycle import Context, Running
        from services.common.security import RevokedSessions
        from services.common.settings import settings_for
        from services.scheduler import handlers
        from services.scheduler.context import scheduler_context
        from services.scheduler.settings import SchedulerSettings

        nc = await connect_bus(settings.nats_url, "bench-scheduler")
        js = nc.jetstream()
        await ensure_streams(js)
        base = Context(
            settings=settings_for(SchedulerSettings, settings),
            nc=nc,
            js=js,
            store=await create_pool(settings.database_url),
            revoked=RevokedSessions(),
            reconnected=[],
        )
        self.context = scheduler_context(base)
        self.running = Running()
        for part in handlers.BACKGROUND:
            await self.running.start(part, self.context)
        for consumer in handlers.CONSUMERS:
            self.running.consume(js, consumer, self.context)

    async def stop(self) -> None:
        await self.running.stop()
        await self.context.nc.drain()
        await self.context.pool.close()


def submitter(mode: str, platform: Platform, sched: InprocScheduler | None):
    """An async function that submits one job and returns its id."""
    if mode == "inproc":
        import msgspec

        from services.scheduler.jobs import service
        from services.scheduler.jobs.schemas import TrainRequest

        request = msgspec.convert(REQUEST, TrainRequest)
        context = sched.context

        async def submit() -> str:
            return await service.submit(
                context.pool, context.nc, context.js, context.scheduler_settings, platform.principal, request
            )

        return submit, None
    port = platform.infra.env["LLMCT_GATEWAY_PORT" if mode == "gateway" else "LLMCT_SCHEDULER_PORT"]
    client = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        timeout=60,
        headers={"Authorization": f"Bearer {platform.token}"},
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
    )

    async def submit() -> str:
        r = await client.post("/api/jobs", json=REQUEST)
        if r.status_code != 201:
            raise RuntimeError(f"POST /api/jobs: {r.status_code} {r.text[:300]}")
        return r.json()["id"]

    return submit, client


async def run_phase(platform: Platform, submit, n: int, concurrency: int, time_cap_s: float) -> dict:
    """`n` jobs, at most `concurrency` in flight (closed loop); stops submitting after `time_cap_s`."""
    obs = platform.observer
    records: list[dict] = []
    errors: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    t_begin = time.perf_counter()

    async def one() -> None:
        async with gate:
            if time.perf_counter() - t_begin > time_cap_s:
                return
            t0 = time.perf_counter()
            try:
                job_id = await submit()
                t_committed = time.perf_counter()
                t_ack = await obs.wait_started(job_id, timeout=60)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                return
            records.append({"id": job_id, "t0": t0, "committed": t_committed, "ack": t_ack})

    await asyncio.gather(*(one() for _ in range(n)))
    wall = (max(r["ack"] for r in records) - t_begin) if records else float("nan")
    await platform.wait_idle()
    t_all_finished = max((obs.finished.get(r["id"], 0.0) for r in records), default=0.0)
    states = dict(
        await platform.pool.fetch(
            "SELECT state, count(*) FROM jobs WHERE id = ANY($1) GROUP BY state", [r["id"] for r in records]
        )
    )
    lat = [r["ack"] - r["t0"] for r in records]
    breakdown = {
        "submit_call": summary_ms([r["committed"] - r["t0"] for r in records]),
        "committed_to_dispatched": summary_ms(
            [obs.dispatched[r["id"]] - r["committed"] for r in records if r["id"] in obs.dispatched]
        ),
        "dispatched_to_ack": summary_ms(
            [r["ack"] - obs.dispatched[r["id"]] for r in records if r["id"] in obs.dispatched]
        ),
    }
    return {
        "jobs": len(records),
        "requested": n,
        "concurrency": concurrency,
        "errors": len(errors),
        "error_samples": errors[:5],
        "wall_s": round(wall, 3),
        "jobs_per_s": round(len(records) / wall, 1) if records else 0.0,
        "submit_to_ack": summary_ms(lat),
        "breakdown": breakdown,
        "all_finished_s": round(t_all_finished - t_begin, 3) if t_all_finished else None,
        "final_states": states,
    }


async def run(args: argparse.Namespace, infra: Infra) -> dict:
    results: dict = {
        "machine": machine(),
        "params": vars(args).copy(),
        "aim": {"p99_ms": AIM_P99_MS, "jobs_per_s": AIM_JOBS_PER_S},
    }
    print(f"baseline: raw nats-py request/reply x{args.jobs} ...", flush=True)
    results["baseline_nats_request_reply"] = await nats_baseline(infra.env["NATS_URL"], args.jobs, args.concurrency)
    print("building blocks: JetStream publish-ack, bus.consume hop ...", flush=True)
    results["building_blocks"] = await building_blocks(infra.env["NATS_URL"], 200)

    # The scheduler asks these two which model and datasets a job may use, whichever mode submits.
    await asyncio.to_thread(infra.start_services, ("registry", "datasets"))
    platform = Platform(infra, args.slots)
    await platform.setup()
    meter = CpuMeter(infra)
    results["modes"] = {}
    try:
        for mode in args.modes:
            sched = None
            if mode == "inproc":
                sched = InprocScheduler()
                await sched.start(platform.settings)
            elif not any(service.name == "scheduler" for service in infra.services):
                print("starting scheduler and gateway as processes ...", flush=True)
                await asyncio.to_thread(infra.start_services, ("scheduler", "gateway"), args.profile)
            await platform.set_slots(args.slots)
            submit, client = submitter(mode, platform, sched)
            try:
                print(f"[{mode}] warm-up ...", flush=True)
                warm = await run_phase(platform, submit, 20, 4, 60)
                if warm["errors"]:
                    raise RuntimeError(f"[{mode}] warm-up jobs failed: {warm['error_samples']}")
                print(f"[{mode}] unloaded probe: {args.probe} jobs, 1 in flight ...", flush=True)
                probe = await run_phase(platform, submit, args.probe, 1, args.probe_cap_s)
                print(f"[{mode}] load: {args.jobs} jobs, {args.concurrency} in flight ...", flush=True)
                cpu0, load0 = meter.snapshot(), os.getloadavg()[0]
                load = await run_phase(platform, submit, args.jobs, args.concurrency, args.cap_s)
                load["cpu_s"] = CpuMeter.delta(cpu0, meter.snapshot())
                load["load_avg_1m_before_after"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
                load["cpu_ms_per_job"] = cpu_per_job(load)
                entry = {"probe": probe, "load": load}
                if mode == args.modes[-1] and args.real_slots:
                    await platform.set_slots(args.real_slots)
                    print(
                        f"[{mode}] realistic slots: {args.real_jobs} jobs, cpu_slots={args.real_slots}, "
                        f"{args.concurrency} in flight ...",
                        flush=True,
                    )
                    entry["realistic_slots"] = await run_phase(
                        platform, submit, args.real_jobs, args.concurrency, args.cap_s
                    )
                    entry["realistic_slots"]["cpu_slots"] = args.real_slots
                    await platform.set_slots(args.slots)
                results["modes"][mode] = entry
                _print_mode(mode, entry)
            finally:
                if client:
                    await client.aclose()
                if sched:
                    await sched.stop()
    finally:
        await platform.close()
    return results


async def run_topology(
    args: argparse.Namespace, infra: Infra, scheduler_counts: list[int], before: str | None = None
) -> list[dict]:
    """Gateway mode on this infra's NATS (one node or a cluster), once per count of scheduler replicas: the
    schedulers and a gateway that forwards to each in turn (LLMCT_SCHEDULER_URLS) are started for the phase and
    stopped after it; registry, datasets, Postgres, NATS and the agent stay. With `before` (another checkout), a
    first and a last phase run one scheduler and the gateway from that tree's code: a change's "before" in the same
    run, on both sides of its "after"."""
    nodes = infra.nats_nodes
    print(f"[nats={nodes}] baseline: raw nats-py request/reply x{args.jobs} ...", flush=True)
    nats_base = await nats_baseline(infra.env["NATS_URL"], args.jobs, args.concurrency)
    await asyncio.to_thread(infra.start_services, ("registry", "datasets"))
    platform = Platform(infra, args.slots)
    await platform.setup()
    meter = CpuMeter(infra)
    phases = []
    try:
        plan = [(count, None) for count in scheduler_counts]
        if before:  # before first and last, around this tree's phases: drift in the machine's load shows as a gap
            plan = [(1, before), *plan, (1, before)]
        for count, tree in plan:
            label = f"nats={nodes} schedulers={count}" + (" BEFORE" if tree else "")
            code = {"PYTHONPATH": tree} if tree else {}
            print(f"[{label}] starting {count} scheduler(s) and a gateway ...", flush=True)
            schedulers = await asyncio.to_thread(infra.start_replicas, "scheduler", count, **code)
            extra = {"LLMCT_SCHEDULER_URLS": Infra.replica_urls(schedulers), **code}
            gateway = await asyncio.to_thread(infra.start_services, ("gateway",), args.profile, **extra)
            client = None
            try:
                await platform.set_slots(args.slots)
                submit, client = submitter("gateway", platform, None)
                warm = await run_phase(platform, submit, 20, 4, 60)
                if warm["errors"]:
                    raise RuntimeError(f"[{label}] warm-up jobs failed: {warm['error_samples']}")
                print(f"[{label}] probe: {args.probe} jobs, 1 in flight ...", flush=True)
                probe = await run_phase(platform, submit, args.probe, 1, args.probe_cap_s)
                print(f"[{label}] load: {args.jobs} jobs, {args.concurrency} in flight ...", flush=True)
                cpu0, load0 = meter.snapshot(), os.getloadavg()[0]
                load = await run_phase(platform, submit, args.jobs, args.concurrency, args.cap_s)
                load["cpu_s"] = CpuMeter.delta(cpu0, meter.snapshot())
                load["load_avg_1m_before_after"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
                load["cpu_ms_per_job"] = cpu_per_job(load)
                phases.append(
                    {
                        "label": label,
                        "nats_nodes": nodes,
                        "schedulers": count,
                        "code": tree or "this tree",
                        "nats_baseline": nats_base,
                        "probe": probe,
                        "load": load,
                    }
                )
                _print_mode(label, {"probe": probe, "load": load})
            finally:
                if client:
                    await client.aclose()
                await asyncio.to_thread(infra.stop_some, [*gateway.values(), *schedulers])
    finally:
        await platform.close()
    return phases


def topologies(args: argparse.Namespace) -> dict:
    """One run, several phases: each NATS size (--nats-nodes) on its own fresh infra, and on it each count of
    scheduler replicas (--schedulers), in alternating order from one infra to the next so that neither count is
    always measured first. Every figure is then set against the first phase of the 1-node, 1-scheduler kind."""
    results: dict = {
        "machine": machine(),
        "params": vars(args).copy(),
        "aim": {"p99_ms": AIM_P99_MS, "jobs_per_s": AIM_JOBS_PER_S},
        "phases": [],
    }
    for i, nodes in enumerate(args.nats_nodes):
        counts = list(args.schedulers) if i % 2 == 0 else list(reversed(args.schedulers))
        with Infra(f"dispatch-nats{nodes}", keep=args.keep, nats_nodes=nodes) as infra:
            before = args.before if i == 0 else None
            results["phases"] += asyncio.run(run_topology(args, infra, counts, before))
    results["machine_after"] = machine()
    return results


def report_topologies(results: dict) -> None:
    phases = results["phases"]
    base = next(
        (p for p in phases if p["nats_nodes"] == 1 and p["schedulers"] == 1 and p["code"] == "this tree"), phases[0]
    )
    rows = []
    for p in phases:
        for name in ("probe", "load"):
            e, b = p[name], base[name]
            s, bs = e["submit_to_ack"], b["submit_to_ack"]
            rows.append(
                [
                    p["label"],
                    name,
                    e["concurrency"],
                    s["p50_ms"],
                    s["p95_ms"],
                    s["p99_ms"],
                    e["jobs_per_s"],
                    e["errors"],
                    f"{ratio(s['p50_ms'], bs['p50_ms'])}x",
                    f"{ratio(s['p99_ms'], bs['p99_ms'])}x",
                    f"{ratio(e['jobs_per_s'], b['jobs_per_s'])}x",
                ]
            )
    print_table(
        f"dispatch through the gateway, submit → agent-ack; ratios against {base['label']} of the same run",
        [
            "phase",
            "",
            "in flight",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "jobs/s",
            "errors",
            "p50 /base",
            "p99 /base",
            "rate /base",
        ],
        rows,
    )
    names = []
    for p in phases:
        for name in p["load"]["cpu_ms_per_job"]["by_process"]:
            if name not in names:
                names.append(name)
    cpu_rows = [[name] + [p["load"]["cpu_ms_per_job"]["by_process"].get(name, "-") for p in phases] for name in names]
    cpu_rows.append(["total"] + [p["load"]["cpu_ms_per_job"]["total"] for p in phases])
    cpu_rows.append(
        ["total / base"]
        + [f"{ratio(p['load']['cpu_ms_per_job']['total'], base['load']['cpu_ms_per_job']['total'])}x" for p in phases]
    )
    cpu_rows.append(
        ["jobs/s, a core each"] + [p["load"]["cpu_ms_per_job"]["ceiling_jobs_per_s_one_core_each"] for p in phases]
    )
    cpu_rows.append(["load avg 1m before/after"] + [str(p["load"]["load_avg_1m_before_after"]) for p in phases])
    print_table(
        "CPU ms per job during the load phase, by process", ["process", *(p["label"] for p in phases)], cpu_rows
    )
    print(f"  machine before: {results['machine']['load_avg']}, after: {results['machine_after']['load_avg']}")


def cpu_per_job(load: dict) -> dict:
    """CPU milliseconds per job by process, and the rates that CPU alone allows: on 2 cores shared by
    every process, and with a core of its own for each process (then the busiest one sets the pace).
    Unlike jobs/s, these hardly depend on what else the shared machine runs."""
    jobs = max(1, load["jobs"])
    per = {name: round(seconds * 1000 / jobs, 2) for name, seconds in load["cpu_s"].items()}
    total = sum(per.values())
    busiest = max(per, key=per.get)
    return {
        "by_process": per,
        "total": round(total, 2),
        "ceiling_jobs_per_s_on_2_cores": round(2000 / total, 1) if total else None,
        "busiest_process": busiest,
        "ceiling_jobs_per_s_one_core_each": round(1000 / per[busiest], 1) if per[busiest] else None,
    }


def _print_mode(mode: str, entry: dict) -> None:
    rows = []
    for name in ("probe", "load", "realistic_slots"):
        if name not in entry:
            continue
        e = entry[name]
        s = e["submit_to_ack"]
        rows.append(
            [
                name,
                e["jobs"],
                e["concurrency"],
                s["p50_ms"],
                s["p99_ms"],
                e["jobs_per_s"],
                e["errors"],
                " ".join(f"{k}={v}" for k, v in sorted(e["final_states"].items())),
            ]
        )
    print_table(
        f"[{mode}] submit → agent-ack",
        ["phase", "jobs", "in flight", "p50 ms", "p99 ms", "jobs/s", "errors", "final states"],
        rows,
    )


def report(results: dict) -> None:
    base = results["baseline_nats_request_reply"]
    bb = results["building_blocks"]
    rows = [
        ["raw NATS request/reply", "1", base["sequential"]["p50_ms"], base["sequential"]["p99_ms"], "-", "-", "-"],
        [
            "raw NATS request/reply",
            str(base["loaded"]["concurrency"]),
            base["loaded"]["p50_ms"],
            base["loaded"]["p99_ms"],
            base["loaded"]["per_s"],
            "-",
            "-",
        ],
        [
            "JetStream publish-ack",
            "1",
            bb["jetstream_publish_ack"]["p50_ms"],
            bb["jetstream_publish_ack"]["p99_ms"],
            "-",
            "-",
            "-",
        ],
    ]
    for batch in (1, 16, 256):
        hop = bb[f"consume_hop_batch_{batch}"]
        rows.append([f"bus.consume hop, batch={batch} (idle)", "1", hop["p50_ms"], hop["p99_ms"], "-", "-", "-"])
    for name in ("to_yaml_pure_python", "to_yaml_libyaml_what_if"):
        rows.append([f"rendering.{name} (CPU)", "1", bb[name]["p50_ms"], bb[name]["p99_ms"], "-", "-", "-"])
    for mode, entry in results["modes"].items():
        for phase in ("probe", "load", "realistic_slots"):
            if phase not in entry:
                continue
            e = entry[phase]
            s = e["submit_to_ack"]
            ref = base["sequential"] if e["concurrency"] == 1 else base["loaded"]
            label = f"{mode} {phase}" + (f" (cpu_slots={e['cpu_slots']})" if phase == "realistic_slots" else "")
            rows.append(
                [
                    label,
                    str(e["concurrency"]),
                    s["p50_ms"],
                    s["p99_ms"],
                    e["jobs_per_s"],
                    f"{ratio(s['p99_ms'], ref['p99_ms'])}x",
                    f"{ratio(base['loaded']['per_s'], e['jobs_per_s'])}x",
                ]
            )
    print_table(
        "dispatch: submit → agent-ack (JobStarted), vs raw NATS in the same run",
        ["path", "in flight", "p50 ms", "p99 ms", "per s", "p99 / NATS", "NATS rate / rate"],
        rows,
    )
    verdict = []
    for mode, entry in results["modes"].items():
        load = entry["load"]
        p99_ok = entry["probe"]["submit_to_ack"]["p99_ms"] < AIM_P99_MS
        rate_ok = load["jobs_per_s"] >= AIM_JOBS_PER_S
        verdict.append(
            [
                mode,
                entry["probe"]["submit_to_ack"]["p99_ms"],
                "met" if p99_ok else "NOT met",
                load["submit_to_ack"]["p99_ms"],
                load["jobs_per_s"],
                "met" if rate_ok else "NOT met",
            ]
        )
    print_table(
        f"aim: p99 < {AIM_P99_MS:.0f} ms, >= {AIM_JOBS_PER_S:.0f} jobs/s",
        ["mode", "probe p99 ms", "p99 aim", "load p99 ms", "jobs/s", "rate aim"],
        verdict,
    )
    for mode, entry in results["modes"].items():
        b = entry["load"]["breakdown"]
        print_table(
            f"[{mode}] where the time goes under load (p50 / p99 ms)",
            ["segment", "p50", "p99"],
            [[k, v["p50_ms"], v["p99_ms"]] for k, v in b.items()],
        )
        c = entry["load"]["cpu_ms_per_job"]
        print_table(
            f"[{mode}] CPU per job during the load phase (load avg before/after: "
            f"{entry['load']['load_avg_1m_before_after']})",
            ["process", "cpu s", "cpu ms / job"],
            [[k, entry["load"]["cpu_s"][k], v] for k, v in c["by_process"].items()]
            + [["total", round(sum(entry["load"]["cpu_s"].values()), 2), c["total"]]],
        )
        print(
            f"  CPU alone allows ~{c['ceiling_jobs_per_s_on_2_cores']} jobs/s on 2 cores; "
            f"~{c['ceiling_jobs_per_s_one_core_each']} jobs/s with a core per process "
            f"(busiest: {c['busiest_process']})"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=1000, help="jobs in the load phase (default 1000)")
    parser.add_argument("--concurrency", type=int, default=32, help="jobs in flight in the load phase")
    parser.add_argument("--probe", type=int, default=200, help="jobs in the unloaded probe (1 in flight)")
    parser.add_argument("--probe-cap-s", type=float, default=40, help="stop submitting probe jobs after this")
    parser.add_argument("--cap-s", type=float, default=75, help="stop submitting load jobs after this")
    parser.add_argument("--slots", type=int, default=100_000, help="CPU slots the agent announces")
    parser.add_argument("--real-slots", type=int, default=2, help="also run a phase with this many slots (0: skip)")
    parser.add_argument("--real-jobs", type=int, default=100, help="jobs in the realistic-slots phase")
    parser.add_argument("--modes", nargs="+", default=["inproc", "gateway"], choices=["inproc", "gateway", "direct"])
    parser.add_argument(
        "--profile",
        choices=["scheduler", "gateway"],
        help="run this service under cProfile; stats in bench/results/dispatch-<service>.prof",
    )
    parser.add_argument(
        "--nats-nodes",
        type=int,
        nargs="+",
        help="topology phases (gateway mode only): NATS nodes, e.g. `1 3` (a local cluster, every stream at R<n>)",
    )
    parser.add_argument(
        "--schedulers",
        type=int,
        nargs="+",
        help="topology phases: scheduler replicas behind the gateway, e.g. `1 2` (LLMCT_SCHEDULER_URLS)",
    )
    parser.add_argument(
        "--before",
        metavar="TREE",
        help="topology runs: also a first phase with the scheduler and gateway from this checkout's code "
        "(e.g. a worktree of main), for a change's before and after in the same run",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (servers' data, logs)")


def main(args: argparse.Namespace) -> dict:
    if args.nats_nodes or args.schedulers or args.before:
        args.nats_nodes = args.nats_nodes or [1]
        args.schedulers = args.schedulers or [1]
        results = topologies(args)
        report_topologies(results)
        write_results("dispatch-topology", results)
        return results
    with Infra("dispatch", keep=args.keep) as infra:
        results = asyncio.run(run(args, infra))
    report(results)
    write_results("dispatch", results)
    return results
