"""overhead: the tiny LoRA job through the whole platform vs the same frozen YAML run directly.

Platform run: every service as a process (launcher.start_services, process runtime, LLMCT_CPU_SLOTS=1),
the tiny Llama built and registered with llmct.bootstrap.ensure_tiny_preset (make_tiny_model
with the engine's interpreter, preset row, tiny datasets public); POST /api/jobs on the gateway, then wait
for `succeeded` (the job feed WebSocket, /api/jobs/feed, says when the state is committed; a GET confirms
it). Meanwhile the logs WebSocket (/api/jobs/{id}/logs) is read to time the first log line (the
platform's own "[platform] train job ..." line) and the first engine line, and the agent's children are
watched (psutil, every 10 ms) to see when the engine process starts and exits.

Direct run: the job's frozen `config_yaml` (from the job detail), with only `output_dir` changed, run as
`.venv-engine/bin/llamafactory-cli train <yaml>` with the environment the agent gives the engine (its
HF_HOME, PYTHONUNBUFFERED, DISABLE_VERSION_CHECK, OMP_NUM_THREADS = cores / slots, CUDA_VISIBLE_DEVICES="",
engine bin first on PATH, platform interpreter variables dropped, cwd = the temp folder). Wall time =
spawn to exit; first line = spawn to the first stdout/stderr line.

Same run, alternating order (platform first on even repetitions, direct first on odd ones), after one
warm-up platform job (which also provides the YAML). Aim: platform wall / direct wall <= 1.05 (median of
the per-pair ratios). Because a shared machine makes the engine's own time swing far more than 5 %, the
platform's own seconds are also measured directly: submit → engine spawned, plus engine exited →
`succeeded` on the feed; with the engine CPU seconds of both runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import statistics
import time
from pathlib import Path

import asyncpg
import httpx
import websockets

from ._infra import CpuMeter, Infra, machine, make_user, print_table, summary_ms, token_for, write_results

AIM_RATIO = 1.05
AGENT_CPU_SLOTS = 1  # one CPU job at a time, so a platform run and a direct run get the same cores


def train_request(steps: int) -> dict:
    """The e2e test's tiny LoRA SFT (tests/e2e/test_training.py), with `steps` steps."""
    return {
        "kind": "train",
        "base_model": "tiny-llama",
        "datasets": ["tiny_sft"],
        "stage": "sft",
        "finetuning_type": "lora",
        "gpu_count": 0,
        "max_steps": steps,
        "logging_steps": 1,
        "save_steps": steps,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "cutoff_len": 128,
        "lora_rank": 4,
    }


async def watch_engine(agent_pid: int, t0: float, marks: dict[str, float]) -> None:
    """Mark when the agent's engine child appears and when it exits (polled every 10 ms)."""
    import psutil

    agent = psutil.Process(agent_pid)
    engine = None
    while True:
        now = time.perf_counter() - t0
        if engine is None:
            children = agent.children()
            if children:
                engine = children[0]
                marks["engine_spawned"] = now
        else:
            try:
                gone = engine.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                gone = True
            if gone:
                marks["engine_exited"] = now
                return
        await asyncio.sleep(0.01)


async def platform_run(gw_url: str, token: str, request: dict, timeout: float, agent_pid: int) -> dict:
    """Submit through the gateway; time to succeeded, first log line, first engine line; engine spawn and exit
    (watched on the agent's children) to tell the platform's own seconds from the engine's."""
    ws_base = gw_url.replace("http", "ws", 1)
    headers = {"Authorization": f"Bearer {token}"}
    marks: dict[str, float] = {}
    async with (
        httpx.AsyncClient(base_url=gw_url, headers=headers, timeout=30) as gw,
        websockets.connect(f"{ws_base}/api/jobs/feed?token={token}") as feed,
    ):
        await asyncio.sleep(0.2)  # the gateway subscribes the feed after accepting
        t0 = time.perf_counter()
        watcher = asyncio.create_task(watch_engine(agent_pid, t0, marks))
        r = await gw.post("/api/jobs", json=request)
        if r.status_code != 201:
            raise RuntimeError(f"POST /api/jobs: {r.status_code} {r.text[:300]}")
        marks["submitted"] = time.perf_counter() - t0
        job = r.json()
        job_id = job["id"]

        async def follow_logs() -> None:
            async with websockets.connect(f"{ws_base}/api/jobs/{job_id}/logs?token={token}", max_size=None) as logs:
                while "first_engine_line" not in marks:
                    frame = json.loads(await logs.recv())
                    now = time.perf_counter() - t0
                    marks.setdefault("first_log_line", now)
                    if any(line["stream"] != "system" for line in frame["lines"]):
                        marks.setdefault("first_engine_line", now)

        async def follow_feed() -> str:
            while True:
                change = json.loads(await asyncio.wait_for(feed.recv(), timeout))
                if change["job_id"] != job_id:
                    continue
                now = time.perf_counter() - t0
                marks.setdefault(change["state"], now)
                if change["state"] in ("succeeded", "failed", "cancelled"):
                    return change["state"]

        logs_task = asyncio.create_task(follow_logs())
        try:
            state = await asyncio.wait_for(follow_feed(), timeout)
        finally:
            await asyncio.sleep(0)
            for task in (logs_task, watcher):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        detail = (await gw.get(f"/api/jobs/{job_id}")).json()
    if state != "succeeded" or detail["state"] != "succeeded":
        raise RuntimeError(f"job {job_id} ended {detail['state']}: {detail.get('message')}")
    added = None
    if "engine_spawned" in marks and "engine_exited" in marks:
        added = marks["engine_spawned"] + (marks[state] - marks["engine_exited"])
    return {
        "job_id": job_id,
        "wall_s": round(marks[state], 3),
        "config_yaml": detail["config_yaml"],
        "marks_s": {k: round(v, 3) for k, v in sorted(marks.items(), key=lambda kv: kv[1])},
        "platform_added_s": round(added, 3) if added is not None else None,
        "engine_wall_s": round(marks["engine_exited"] - marks["engine_spawned"], 3) if added is not None else None,
        "engine_results": engine_results(detail["config"]["output_dir"]),
    }


def engine_results(output_dir) -> dict:
    """What the engine itself timed (all_results.json): its training loop, apart from start-up."""
    try:
        data = json.loads((Path(output_dir) / "all_results.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: data[k] for k in ("train_runtime", "train_samples_per_second", "train_loss") if k in data}


def children_cpu() -> float:
    """CPU seconds of this process's exited, waited-for children (the direct engine)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def direct_run(infra: Infra, config_yaml: str, tag: str, timeout: float) -> dict:
    """The frozen YAML, only output_dir changed, run the way the process runtime runs the engine."""
    from services.agent.app import ENGINE_BIN

    storage = infra.settings.storage
    out_dir = storage.output / f"direct-{tag}"
    text, count = re.subn(r"(?m)^output_dir: .*$", f"output_dir: {out_dir}", config_yaml)
    assert count == 1, "the frozen YAML has one output_dir line"
    config_path = storage.temp / f"direct-{tag}.yaml"
    config_path.write_text(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    # As services/agent/runner.py (_spec) and runtimes/process.py build it for a CPU job on an agent with
    # LLMCT_CPU_SLOTS=1: the platform's interpreter variables dropped, OMP threads = cores / slots.
    inherited = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env = {
        **inherited,
        "HF_HOME": str(storage.hf_cache),
        "PYTHONUNBUFFERED": "1",
        "DISABLE_VERSION_CHECK": "1",
        "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // AGENT_CPU_SLOTS)),
        "PATH": f"{ENGINE_BIN}:{os.environ.get('PATH', '')}",
        "CUDA_VISIBLE_DEVICES": "",
    }
    marks: dict[str, float] = {}
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        str(ENGINE_BIN / "llamafactory-cli"),
        "train",
        str(config_path),
        cwd=str(storage.temp),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        limit=1024 * 1024,
    )
    tail: list[str] = []

    async def read(stream) -> None:
        while line := await stream.readline():
            marks.setdefault("first_engine_line", time.perf_counter() - t0)
            tail.append(line.decode(errors="replace").rstrip())
            del tail[:-20]

    await asyncio.wait_for(asyncio.gather(read(process.stdout), read(process.stderr), process.wait()), timeout)
    wall = time.perf_counter() - t0
    if process.returncode != 0:
        raise RuntimeError(f"direct run exited {process.returncode}:\n" + "\n".join(tail))
    return {
        "wall_s": round(wall, 3),
        "marks_s": {k: round(v, 3) for k, v in marks.items()},
        "engine_cpu_s": round(children_cpu() - cpu0, 3),
        "engine_results": engine_results(out_dir),
    }


async def prepare(infra: Infra) -> str:
    """The tiny model (built with the engine's interpreter) as a preset, the tiny datasets, a user; a token."""
    from llmct.bootstrap import ensure_tiny_preset

    settings = infra.settings
    # Built with the engine's interpreter (make_tiny_model), registered as a preset, tiny datasets made public:
    # the one function `llmct up` and the tests use.
    await asyncio.to_thread(ensure_tiny_preset, settings.storage, settings.database_url, "tiny-llama")
    conn = await asyncpg.connect(settings.database_url)
    try:
        user_id = await make_user(conn, "bench-overhead")
    finally:
        await conn.close()
    return token_for(settings, user_id, "bench-overhead")


async def run(args: argparse.Namespace, infra: Infra) -> dict:
    results: dict = {"machine": machine(), "params": vars(args).copy(), "aim": {"wall_ratio_max": AIM_RATIO}}
    print("building the tiny model ...", flush=True)
    token = await prepare(infra)
    gw_url = f"http://127.0.0.1:{infra.env['LLMCT_GATEWAY_PORT']}"
    request = train_request(args.steps)
    print("warm-up platform job (also gives the frozen YAML) ...", flush=True)
    agent_pid = next(s for s in infra.services if s.name == "agent").process.pid
    warm = await platform_run(gw_url, token, request, args.timeout, agent_pid)
    results["warmup"] = {k: v for k, v in warm.items() if k != "config_yaml"}
    config_yaml = warm["config_yaml"]
    results["config_yaml"] = config_yaml
    meter = CpuMeter(infra)
    reps = []
    for rep in range(args.reps):
        order = ("platform", "direct") if rep % 2 == 0 else ("direct", "platform")
        entry: dict = {"rep": rep, "order": list(order)}
        for which in order:
            cpu0, agent0 = meter.snapshot(), agent_cpu(infra)
            if which == "platform":
                entry["platform"] = await platform_run(gw_url, token, request, args.timeout, agent_pid)
                entry["platform"].pop("config_yaml")
                agent1 = agent_cpu(infra)
                # The agent's own CPU, and its engine child's (counted in the agent once it is waited for).
                entry["platform"]["agent_self_cpu_s"] = round(agent1[0] - agent0[0], 3)
                entry["platform"]["engine_cpu_s"] = round(agent1[1] - agent0[1], 3)
            else:
                entry["direct"] = await direct_run(infra, config_yaml, str(rep), args.timeout)
            entry[which]["cpu_s"] = CpuMeter.delta(cpu0, meter.snapshot())
            print(f"  rep {rep} {which:8s} wall {entry[which]['wall_s']:.2f} s", flush=True)
        entry["wall_ratio"] = round(entry["platform"]["wall_s"] / entry["direct"]["wall_s"], 4)
        reps.append(entry)
    results["reps"] = reps
    ratios = [r["wall_ratio"] for r in reps]
    plat = [r["platform"]["wall_s"] for r in reps]
    direct = [r["direct"]["wall_s"] for r in reps]
    results["summary"] = {
        "platform_wall_s_median": round(statistics.median(plat), 3),
        "direct_wall_s_median": round(statistics.median(direct), 3),
        "wall_ratio_median": round(statistics.median(ratios), 4),
        "wall_ratio_of_sums": round(sum(plat) / sum(direct), 4),
        "wall_ratio_min": min(ratios),
        "wall_ratio_max": max(ratios),
        "platform_overhead_s_median": round(statistics.median(p - d for p, d in zip(plat, direct, strict=False)), 3),
        "submit_to_first_log_line": summary_ms(_marks(reps, "platform", "first_log_line")),
        "submit_to_first_engine_line": summary_ms(_marks(reps, "platform", "first_engine_line")),
        "direct_spawn_to_first_engine_line": summary_ms(_marks(reps, "direct", "first_engine_line")),
        "submit_to_running": summary_ms(_marks(reps, "platform", "running")),
        "aim_met": statistics.median(ratios) <= AIM_RATIO,
    }
    # CPU: the engine's (+ the agent's) during a platform run vs the engine's during a direct run, and what
    # the rest of the platform (other services, NATS, Postgres) burnt meanwhile. Less sensitive than wall
    # time to what else the shared machine runs.
    engine_platform = [r["platform"]["engine_cpu_s"] for r in reps]
    engine_direct = [r["direct"]["engine_cpu_s"] for r in reps]
    rest = [
        r["platform"]["agent_self_cpu_s"]
        + sum(v for k, v in r["platform"]["cpu_s"].items() if k not in ("service agent", "bench (this process)"))
        for r in reps
    ]
    runtime_p = [r["platform"]["engine_results"].get("train_runtime") for r in reps]
    runtime_d = [r["direct"]["engine_results"].get("train_runtime") for r in reps]
    results["summary"].update(
        {
            "engine_cpu_s_platform_median": round(statistics.median(engine_platform), 3),
            "engine_cpu_s_direct_median": round(statistics.median(engine_direct), 3),
            "engine_cpu_ratio_platform_vs_direct": round(sum(engine_platform) / sum(engine_direct), 4)
            if sum(engine_direct)
            else None,
            "platform_cpu_s_per_run_median": round(statistics.median(rest), 3),
            "engine_train_runtime_s_platform_median": statistics.median(runtime_p) if None not in runtime_p else None,
            "engine_train_runtime_s_direct_median": statistics.median(runtime_d) if None not in runtime_d else None,
            "wall_ratio_stdev": round(statistics.stdev(ratios), 4) if len(ratios) > 1 else None,
        }
    )
    # The platform's own seconds: submit → engine spawned, plus engine exited → `succeeded` on the feed.
    # Unlike the wall ratio, this does not swing with the engine's own speed on a shared machine.
    added = [r["platform"]["platform_added_s"] for r in reps if r["platform"]["platform_added_s"] is not None]
    if added:
        med_added, med_direct = statistics.median(added), statistics.median(direct)
        results["summary"].update(
            {
                "platform_added_s_median": round(med_added, 3),
                "platform_added_s_max": round(max(added), 3),
                "submit_to_engine_spawn_s_median": round(
                    statistics.median(r["platform"]["marks_s"]["engine_spawned"] for r in reps), 3
                ),
                "engine_exit_to_succeeded_s_median": round(
                    statistics.median(
                        r["platform"]["marks_s"]["succeeded"] - r["platform"]["marks_s"]["engine_exited"] for r in reps
                    ),
                    3,
                ),
                "implied_wall_ratio": round((med_direct + med_added) / med_direct, 4),
                "engine_wall_platform_median_s": round(
                    statistics.median(r["platform"]["engine_wall_s"] for r in reps), 3
                ),
            }
        )
    return results


def agent_cpu(infra: Infra) -> tuple[float, float]:
    """(own, waited-for children's) CPU seconds of the agent process."""
    import psutil

    agent = next(s for s in infra.services if s.name == "agent")
    times = psutil.Process(agent.process.pid).cpu_times()
    return times.user + times.system, times.children_user + times.children_system


def _marks(reps: list[dict], which: str, mark: str) -> list[float]:
    return [r[which]["marks_s"][mark] for r in reps if mark in r[which]["marks_s"]]


def report(results: dict) -> None:
    rows = []
    for r in results["reps"]:
        p, d = r["platform"], r["direct"]
        rows.append(
            [
                r["rep"],
                " → ".join(r["order"]),
                p["wall_s"],
                d["wall_s"],
                f"{r['wall_ratio']:.3f}",
                p["marks_s"].get("running", "-"),
                p["marks_s"].get("first_log_line", "-"),
                p["marks_s"].get("first_engine_line", "-"),
                d["marks_s"].get("first_engine_line", "-"),
            ]
        )
    print_table(
        "overhead: tiny LoRA job, platform vs direct llamafactory-cli (seconds)",
        [
            "rep",
            "order",
            "platform wall",
            "direct wall",
            "ratio",
            "submit→running",
            "submit→1st log line",
            "submit→1st engine line",
            "direct: spawn→1st line",
        ],
        rows,
    )
    s = results["summary"]
    print_table(
        "summary",
        ["measure", "value"],
        [
            ["platform wall, median s", s["platform_wall_s_median"]],
            ["direct wall, median s", s["direct_wall_s_median"]],
            ["wall ratio, median (aim <= 1.05)", f"{s['wall_ratio_median']:.3f}"],
            ["wall ratio, sum/sum", f"{s['wall_ratio_of_sums']:.3f}"],
            ["platform overhead, median s", s["platform_overhead_s_median"]],
            ["submit→first log line, p50 ms", s["submit_to_first_log_line"]["p50_ms"]],
            ["submit→first engine line, p50 ms", s["submit_to_first_engine_line"]["p50_ms"]],
            ["direct spawn→first engine line, p50 ms", s["direct_spawn_to_first_engine_line"]["p50_ms"]],
            [
                "wall ratio, min / max / stdev",
                f"{s['wall_ratio_min']:.3f} / {s['wall_ratio_max']:.3f} / "
                f"{s['wall_ratio_stdev'] if s['wall_ratio_stdev'] is not None else '-'}",
            ],
            [
                "engine CPU s, platform / direct (medians)",
                f"{s['engine_cpu_s_platform_median']} / {s['engine_cpu_s_direct_median']}",
            ],
            ["engine CPU ratio, platform / direct", s["engine_cpu_ratio_platform_vs_direct"]],
            [
                "engine's own train_runtime s, platform / direct (medians)",
                f"{s['engine_train_runtime_s_platform_median']} / {s['engine_train_runtime_s_direct_median']}",
            ],
            [
                "platform CPU s per run (agent itself, other services, NATS, Postgres)",
                s["platform_cpu_s_per_run_median"],
            ],
            [
                "platform-added s: submit→engine spawn + engine exit→succeeded (median / max)",
                f"{s.get('platform_added_s_median')} / {s.get('platform_added_s_max')}",
            ],
            [
                "  of which submit→engine spawn / exit→succeeded (medians)",
                f"{s.get('submit_to_engine_spawn_s_median')} / {s.get('engine_exit_to_succeeded_s_median')}",
            ],
            ["implied wall ratio: (direct + platform-added) / direct", s.get("implied_wall_ratio")],
            ["aim met (median measured wall ratio <= 1.05)", "yes" if s["aim_met"] else "NO"],
        ],
    )
    cpu_rows = []
    for r in results["reps"]:
        for which in ("platform", "direct"):
            cpu = r[which]["cpu_s"]
            others = sum(v for k, v in cpu.items() if k.startswith("service ") and k != "service agent")
            cpu_rows.append(
                [
                    r["rep"],
                    which,
                    r[which]["engine_cpu_s"],
                    r[which]["engine_results"].get("train_runtime", "-"),
                    r[which].get("agent_self_cpu_s", "-"),
                    round(others, 2),
                    cpu.get("nats-server", 0.0),
                    cpu.get("postgres (all backends)", 0.0),
                ]
            )
    print_table(
        "CPU seconds while each run was going",
        ["rep", "run", "engine cpu", "engine train_runtime", "agent itself", "other services", "nats", "postgres"],
        cpu_rows,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reps", type=int, default=4, help="repetitions of the platform/direct pair (even: each order equally often)"
    )
    parser.add_argument("--steps", type=int, default=12, help="training steps of the tiny job (the e2e test: 12)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one run may take")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (servers' data, logs)")


def main(args: argparse.Namespace) -> dict:
    with Infra("overhead", keep=args.keep) as infra:
        print("starting every service as a process ...", flush=True)
        infra.start_services(
            ("auth", "scheduler", "datasets", "registry", "agent", "gateway"),
            LLMCT_HEARTBEAT_S="1",
            LLMCT_CPU_SLOTS=str(AGENT_CPU_SLOTS),
            LLMCT_RUNTIME="process",
        )
        results = asyncio.run(run(args, infra))
    report(results)
    write_results("overhead", results)
    return results
