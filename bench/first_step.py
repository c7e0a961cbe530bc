"""first_step: time from submit to the first training step, `objects` storage mode (cold and warm cache) against
`shared` mode, in the same run.

Two platforms, one after the other, each with every service as a process and one agent (process runtime): `shared`
(the agent reads the services' folder) and `objects` (the agent has a folder of its own; the model and the dataset
come over NATS into its cache). The tiny Llama is registered with a padding file of `--pad-mb` beside its weights,
so that the model a cold agent pulls weighs what a small real one does (the engine never reads the padding; in
`shared` mode it just lies there). Each platform runs `--jobs` tiny LoRA jobs in a row; a job's time to its first
step is from POST /api/jobs to the first progress point in the job's detail (polled every 0.1 s), its time to the
end is to `succeeded`. In `objects` mode the first job is the cold one: nothing in the store yet (the registry and
the datasets service copy the files in on this first use; the submit answers 503 `inputs_being_stored` meanwhile
and is sent again every second, as a client would) and nothing in the agent's cache; the next ones are warm.
Ratios: objects cold / shared and objects warm / shared, medians of the shared jobs as the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx

from ._infra import Infra, machine, make_user, print_table, ratio, token_for, write_results
from .overhead import train_request

CONTROL_PLANE = ("auth", "scheduler", "datasets", "registry")


async def prepare(infra: Infra, pad_mb: int) -> str:
    """The tiny model (with its padding) as a preset, the tiny datasets, a user; returns a token."""
    from llmct.bootstrap import ensure_tiny_preset

    settings = infra.settings
    model = settings.storage.models / "tiny-llama"
    await asyncio.to_thread(ensure_tiny_preset, settings.storage, settings.database_url, "tiny-llama")
    with (model / "padding.bin").open("wb") as f:
        for _ in range(pad_mb):
            f.write(os.urandom(1024 * 1024))
    conn = await asyncpg.connect(settings.database_url)
    try:
        user_id = await make_user(conn, "bench-first-step")
    finally:
        await conn.close()
    return token_for(settings, user_id, "bench-first-step")


async def one_job(gw: httpx.AsyncClient, request: dict, timeout: float) -> dict:
    """Submit, then poll: seconds to the first progress point and to `succeeded`."""
    t0 = time.perf_counter()
    while True:  # a first copy into the store longer than the owner's answer: 503, submit again (as a client would)
        r = await gw.post("/api/jobs", json=request)
        if r.status_code != 503 or r.json()["error"]["code"] != "inputs_being_stored":
            break
        await asyncio.sleep(1)
    r.raise_for_status()
    job_id = r.json()["id"]
    first = None
    while time.perf_counter() - t0 < timeout:
        job = (await gw.get(f"/api/jobs/{job_id}")).json()
        if first is None and job.get("progress_series"):
            first = time.perf_counter() - t0
        if job["state"] in ("succeeded", "failed", "cancelled"):
            if job["state"] != "succeeded":
                raise RuntimeError(f"job {job_id} {job['state']}: {job.get('message')}")
            return {"job_id": job_id, "first_step_s": first, "end_s": time.perf_counter() - t0, **phases(job)}
        await asyncio.sleep(0.1)
    raise TimeoutError(f"job {job_id} did not end within {timeout} s")


def phases(job: dict) -> dict:
    """Where the time to the first step went, by the scheduler's own clock: seconds from the job's creation to each
    state in its history (the first of each), to its start, and to its first progress point."""
    created = datetime.fromisoformat(job["created_at"])

    def since(at: str) -> float:
        return round((datetime.fromisoformat(at) - created).total_seconds(), 3)

    marks: dict[str, float] = {}
    for event in job.get("history", []):
        marks.setdefault(f"to_{event['state']}_s", since(event["at"]))
    if job.get("started_at"):
        marks["to_started_s"] = since(job["started_at"])
    if job.get("progress_series"):
        marks["to_first_point_s"] = since(job["progress_series"][0]["at"])
    return marks


def platform(mode: str, args: argparse.Namespace) -> list[dict]:
    with Infra(f"first-step-{mode}") as infra:
        print(f"[{mode}] building the tiny model, padding {args.pad_mb} MB ...", flush=True)
        token = asyncio.run(prepare(infra, args.pad_mb))
        common = {"LLMCT_STORAGE_MODE": mode, "LLMCT_HEARTBEAT_S": "1", "LLMCT_RUNTIME": "process"}
        infra.start_services(CONTROL_PLANE, **common)
        agent_base = infra.base / "agent-host" if mode == "objects" else Path(infra.env["HOST_BASE_PATH"])
        infra.start_services(("agent",), **common, LLMCT_CPU_SLOTS="1", HOST_BASE_PATH=str(agent_base))
        infra.start_services(("gateway",), **common)

        async def jobs() -> list[dict]:
            url = f"http://127.0.0.1:{infra.env['LLMCT_GATEWAY_PORT']}"
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as gw:
                done = []
                for index in range(args.jobs):
                    result = await one_job(gw, train_request(args.steps), args.timeout)
                    result["cache"] = ("cold" if index == 0 else "warm") if mode == "objects" else "-"
                    print(f"[{mode}] job {index + 1}: {result}", flush=True)
                    done.append(result)
                return done

        return asyncio.run(jobs())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=3, help="jobs per platform (objects: the first cold, then warm)")
    parser.add_argument("--steps", type=int, default=4, help="training steps of each tiny job")
    parser.add_argument("--pad-mb", type=int, default=512, help="MB of padding beside the tiny model's weights")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one job may take")


def main(args: argparse.Namespace) -> dict:
    results: dict = {"machine": machine(), "params": vars(args).copy()}
    shared = platform("shared", args)
    objects_mode = platform("objects", args)
    results["shared"], results["objects"] = shared, objects_mode
    base = statistics.median(j["first_step_s"] for j in shared)
    cold = objects_mode[0]["first_step_s"]
    warm = statistics.median(j["first_step_s"] for j in objects_mode[1:]) if len(objects_mode) > 1 else float("nan")
    results["ratios"] = {"cold_vs_shared": ratio(cold, base), "warm_vs_shared": ratio(warm, base)}
    rows = [["shared", "-", f"{base:.2f}", "1.00"]]
    rows += [["objects", "cold", f"{cold:.2f}", f"{ratio(cold, base):.2f}"]]
    rows += [["objects", "warm", f"{warm:.2f}", f"{ratio(warm, base):.2f}"]]
    print_table("submit → first training step (s)", ["mode", "cache", "seconds", "vs shared"], rows)
    write_results("first_step", results)
    return results
