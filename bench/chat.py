"""chat: streaming chat through the gateway (gateway → NATS → agent → model server) against the same requests
sent straight to the agent's local model server, in the same run.

Setup: every service as a process (process runtime, one CPU slot), the tiny Llama deployed through
POST /api/deployments with greedy decoding on `--engine` (vLLM by default), waited until `ready`. The local
server's port and key are read from the engine process (users never see them). Same client code both ways
(httpx, streamed server-sent events); requests alternate between the two paths.

Measured:
- time to first token (first event with content), p50/p99 each way, and the added latency (aim: < 5 ms p50);
- tokens per second of a whole request (pieces of text / its time), and the platform/direct ratio (aim: >= 0.95);
- `--concurrency` streams at once (default 50) each way: total tokens/s and p50 time to first token.
The tiny model on a CPU generates fast, so the per-token overhead is as visible here as it will ever be.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import httpx

from . import overhead
from ._infra import Infra, machine, print_table, summary_ms, write_results

MESSAGES = [{"role": "user", "content": "What is the capital of Canada?"}]


async def stream_once(client: httpx.AsyncClient, url: str, headers: dict, model: str, max_tokens: int) -> dict:
    body = {"model": model, "messages": MESSAGES, "stream": True, "max_tokens": max_tokens}
    t0 = time.perf_counter()
    first = None
    tokens = 0
    async with client.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line.endswith("[DONE]"):
                continue
            chunk = json.loads(line[5:])
            if any((c.get("delta") or {}).get("content") for c in chunk.get("choices", ())):
                first = first or time.perf_counter()
                tokens += 1
    wall = time.perf_counter() - t0
    # Tokens over the whole request: vLLM sends the tiny model's tokens in bursts, where a rate between the first and
    # the last piece of text would measure the bursts.
    return {"ttft_s": (first - t0) if first else None, "tokens": tokens, "tokens_per_s": tokens / wall, "wall_s": wall}


def server_address(agent_pid: int, deployment_id: str) -> tuple[str, str]:
    """(base URL, API key) of the deployment's model server, from its process (users never see them): LLaMA-Factory's
    reads them from its environment; vLLM's port is on its command line, its key in its environment."""
    import psutil

    for child in psutil.Process(agent_pid).children(recursive=True):
        try:
            env, argv = child.environ(), child.cmdline()
        except psutil.Error:
            continue
        if env.get("API_MODEL_NAME") == deployment_id:
            return f"http://127.0.0.1:{env['API_PORT']}", env["API_KEY"]
        if f"--served-model-name={deployment_id}" in argv and "VLLM_API_KEY" in env:
            port = next(a.split("=", 1)[1] for a in argv if a.startswith("--port="))
            return f"http://127.0.0.1:{port}", env["VLLM_API_KEY"]
    raise RuntimeError("the model server's process was not found")


async def concurrent(client, url, headers, model, n: int, max_tokens: int) -> dict:
    t0 = time.perf_counter()
    runs = await asyncio.gather(*(stream_once(client, url, headers, model, max_tokens) for _ in range(n)))
    wall = time.perf_counter() - t0
    ttfts = [r["ttft_s"] for r in runs if r["ttft_s"] is not None]
    return {
        "streams": n,
        "wall_s": round(wall, 3),
        "tokens": sum(r["tokens"] for r in runs),
        "tokens_per_s_total": round(sum(r["tokens"] for r in runs) / wall, 2),
        "ttft": summary_ms(ttfts),
    }


async def run(args: argparse.Namespace, infra: Infra) -> dict:
    results: dict = {"machine": machine(), "params": vars(args).copy()}
    token = await overhead.prepare(infra)
    gw_url = f"http://127.0.0.1:{infra.env['LLMCT_GATEWAY_PORT']}"
    agent_pid = next(s for s in infra.services if s.name == "agent").process.pid
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=gw_url, headers=headers, timeout=300, limits=httpx.Limits(max_connections=200)
    ) as gw:
        r = await gw.post(
            "/api/deployments",
            json={
                "model": "tiny-llama",
                "gpu_count": 0,
                "idle_timeout_s": 3600,
                "engine": args.engine,
                "max_in_flight": max(args.concurrency, 1),
                "max_queue": 1024,
                "generation": {"do_sample": False},
            },
        )
        r.raise_for_status()
        deployment_id = r.json()["id"]
        while (state := (await gw.get(f"/api/deployments/{deployment_id}")).json()["state"]) != "ready":
            if state in ("failed", "stopped"):
                raise RuntimeError(f"deployment {state}")
            await asyncio.sleep(0.5)
        direct_url, key = server_address(agent_pid, deployment_id)
        paths = {
            "platform": (f"{gw_url}/v1/chat/completions", headers),
            "direct": (f"{direct_url}/v1/chat/completions", {"Authorization": f"Bearer {key}"}),
        }
        async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=200)) as client:
            for which in paths:  # warm both paths once
                await stream_once(client, *paths[which], deployment_id, args.max_tokens)
            single: dict[str, list[dict]] = {"platform": [], "direct": []}
            for i in range(args.requests):
                for which in ("platform", "direct") if i % 2 == 0 else ("direct", "platform"):
                    single[which].append(await stream_once(client, *paths[which], deployment_id, args.max_tokens))
            # Concurrent rounds: one unmeasured (the engine's first batch of a size is slow), then `--rounds` each way,
            # alternating; the round with the median tokens/s of each way is reported.
            await concurrent(client, *paths["direct"], deployment_id, args.concurrency, args.max_tokens)
            rounds: dict[str, list[dict]] = {"direct": [], "platform": []}
            for i in range(args.rounds):
                for which in ("direct", "platform") if i % 2 == 0 else ("platform", "direct"):
                    rounds[which].append(
                        await concurrent(client, *paths[which], deployment_id, args.concurrency, args.max_tokens)
                    )
            conc = {}
            for which, done in rounds.items():
                done.sort(key=lambda r: r["tokens_per_s_total"])
                conc[which] = {**done[len(done) // 2], "rounds_tokens_per_s": [r["tokens_per_s_total"] for r in done]}
        await gw.post(f"/api/deployments/{deployment_id}/stop")

    def ttfts(which):
        return [r["ttft_s"] for r in single[which] if r["ttft_s"] is not None]

    def rates(which):
        return [r["tokens_per_s"] for r in single[which] if r["tokens_per_s"]]

    pairs = [
        p["ttft_s"] - d["ttft_s"]
        for p, d in zip(single["platform"], single["direct"], strict=False)
        if p["ttft_s"] is not None and d["ttft_s"] is not None
    ]
    results["single"] = {
        which: {
            "ttft": summary_ms(ttfts(which)),
            "tokens_per_s_median": round(statistics.median(rates(which)), 2),
            "tokens_median": statistics.median(r["tokens"] for r in single[which]),
        }
        for which in single
    }
    results["summary"] = {
        "added_ttft_ms_p50": round(
            statistics.median(ttfts("platform")) * 1000 - statistics.median(ttfts("direct")) * 1000, 2
        ),
        "added_ttft_ms_paired_median": round(statistics.median(pairs) * 1000, 2),
        "tokens_per_s_ratio": round(statistics.median(rates("platform")) / statistics.median(rates("direct")), 4),
        "concurrent": conc,
        "concurrent_tokens_per_s_ratio": round(
            conc["platform"]["tokens_per_s_total"] / conc["direct"]["tokens_per_s_total"], 4
        ),
        "aims": {"added_ttft_ms_p50_max": 5, "tokens_per_s_ratio_min": 0.95},
    }
    return results


def report(results: dict) -> None:
    rows = [
        [which, s["ttft"]["p50_ms"], s["ttft"]["p99_ms"], s["tokens_per_s_median"], s["tokens_median"]]
        for which, s in results["single"].items()
    ]
    print_table(
        "chat: one stream at a time",
        ["path", "TTFT p50 ms", "TTFT p99 ms", "tokens/s (median)", "tokens per reply"],
        rows,
    )
    s = results["summary"]
    c = s["concurrent"]
    print_table(
        "summary",
        ["measure", "value"],
        [
            ["added time to first token, p50 ms (aim < 5)", s["added_ttft_ms_p50"]],
            ["added time to first token, paired median ms", s["added_ttft_ms_paired_median"]],
            ["tokens/s ratio platform/direct (aim >= 0.95)", s["tokens_per_s_ratio"]],
            [
                f"{c['platform']['streams']} concurrent: tokens/s platform / direct",
                f"{c['platform']['tokens_per_s_total']} / {c['direct']['tokens_per_s_total']}",
            ],
            ["concurrent tokens/s ratio", s["concurrent_tokens_per_s_ratio"]],
            [
                "concurrent TTFT p50 ms platform / direct",
                f"{c['platform']['ttft']['p50_ms']} / {c['direct']['ttft']['p50_ms']}",
            ],
        ],
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=40, help="single-stream requests per path")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens generated per request")
    parser.add_argument("--concurrency", type=int, default=50, help="streams at once in the concurrent round")
    parser.add_argument("--rounds", type=int, default=3, help="concurrent rounds each way (the median is reported)")
    parser.add_argument(
        "--engine", choices=("vllm", "llamafactory"), default="vllm", help="the deployment's serving engine"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")


def main(args: argparse.Namespace) -> dict:
    with Infra("chat", keep=args.keep) as infra:
        print("starting every service as a process ...", flush=True)
        infra.start_services(
            ("auth", "scheduler", "datasets", "registry", "agent", "gateway"),
            LLMCT_HEARTBEAT_S="1",
            LLMCT_CPU_SLOTS="1",
            LLMCT_RUNTIME="process",
            # One client address runs every stream here: room for all of them (the default is 32).
            LLMCT_GATEWAY_CLIENT_CONCURRENCY=str(max(args.concurrency * 2, 32)),
        )
        results = asyncio.run(run(args, infra))
    report(results)
    write_results("chat", results)
    return results
