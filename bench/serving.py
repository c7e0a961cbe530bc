"""serving: vLLM against LLaMA-Factory's server on the same model, and vLLM's multi-LoRA against the base alone and
a merged model, all on this machine's CPU in one run (no platform: the engines' own OpenAI servers).

Setup: the tiny Llama (`llmct/tiny/make_model.py`) and `--adapters` random LoRA adapters of it plus a merged copy of
the first (`bench/_tiny_adapters.py`, in the engine's interpreter). Servers, one at a time:
1. `llamafactory-cli api` on the base (.venv-engine) — today's engine;
2. vLLM on the base, without LoRA (.venv-vllm) — the engine comparison, and "the base alone";
3. vLLM on the merged model, without LoRA — what a merged adapter costs to serve;
4. vLLM on the base with `--enable-lora --max-loras N`, the adapters loaded at run time — the mixed batches.

Measured, each the same client code (httpx, streamed chat completions, greedy, `--max-tokens` each):
- time to first token p50 and tokens per second of a whole request (tokens / its time), one stream at a time;
- `--concurrency` streams at once: total tokens/s and p50 time to first token;
- multi-LoRA: the concurrent round with requests spread over 1, 4 and 16 adapters (a mixed batch) against the
  same round on the base alone and on the merged model;
- memory: the resident set of the vLLM server's process tree before and after loading every adapter (per adapter),
  against a whole second server (what one more deployment costs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from ._infra import REPO_ROOT, machine, print_table, summary_ms, write_results

ENGINE_PY = REPO_ROOT / ".venv-engine" / "bin" / "python"
VLLM_PY = REPO_ROOT / ".venv-vllm" / "bin" / "python"
MESSAGES = [{"role": "user", "content": "What is the capital of Canada?"}]


class Server:
    """One OpenAI-compatible server process (its own session: stopped with its children)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, key: str, log: Path):
        self.name, self.port, self.key = name, port, key
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.process = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def wait_ready(self, model: str, timeout_s: float = 600) -> float:
        """Seconds until a real one-token chat completion answers."""
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=60) as client:
            while time.monotonic() - started < timeout_s:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited: see {self.log}")
                try:
                    r = await client.post(
                        f"{self.url}/v1/chat/completions",
                        json={"model": model, "messages": MESSAGES, "max_tokens": 1},
                        headers=self.headers,
                    )
                    if r.status_code == 200:
                        return time.monotonic() - started
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready in {timeout_s} s: see {self.log}")

    def rss_mb(self) -> float:
        import psutil

        root = psutil.Process(self.process.pid)
        total = 0
        for proc in [root, *root.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return round(total / 2**20, 1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def llamafactory(model: Path, work: Path) -> Server:
    port, key = free_port(), secrets.token_urlsafe(12)
    config = work / "lf-serve.yaml"
    config.write_text(
        f"model_name_or_path: {model}\ntemplate: default\ninfer_backend: huggingface\ntrust_remote_code: false\n"
        "do_sample: false\n"
    )
    env = {"API_HOST": "127.0.0.1", "API_PORT": str(port), "API_KEY": key, "API_MODEL_NAME": "base"}
    argv = [str(ENGINE_PY.parent / "llamafactory-cli"), "api", str(config)]
    return Server("llamafactory", argv, env, port, key, work / "lf.log")


def vllm(model: Path, work: Path, name: str, max_loras: int = 0, rank: int = 8) -> Server:
    port, key = free_port(), secrets.token_urlsafe(12)
    argv = [
        str(VLLM_PY),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        "base",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--api-key",
        key,
        "--dtype",
        "float32",
        "--max-model-len",
        "512",
        "--kv-cache-memory-bytes",
        str(256 * 2**20),
    ]
    if max_loras:
        argv += ["--enable-lora", "--max-loras", str(max_loras), "--max-cpu-loras", str(max_loras)]
        argv += ["--max-lora-rank", str(rank)]
    env = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    return Server(name, argv, env, port, key, work / f"{name}.log")


async def stream_once(client: httpx.AsyncClient, server: Server, model: str, max_tokens: int) -> dict:
    """One streamed greedy chat completion: time to its first piece of text, tokens generated (the engine's usage
    count when it sends one, else the pieces of text), and its whole time. The tiny model generates a token every
    few hundred microseconds, so the engine's chunks arrive in bursts: a rate within one stream would measure the
    bursts, and tokens over the request's whole time is what is compared."""
    body = {
        "model": model,
        "messages": MESSAGES,
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    first = None
    pieces = 0
    counted = None
    async with client.stream("POST", f"{server.url}/v1/chat/completions", json=body, headers=server.headers) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data:") or line.endswith("[DONE]"):
                continue
            chunk = json.loads(line[5:])
            if chunk.get("usage"):
                counted = chunk["usage"].get("completion_tokens")
            if any((c.get("delta") or {}).get("content") for c in chunk.get("choices", ())):
                first = first or time.perf_counter()
                pieces += 1
    wall = time.perf_counter() - t0
    tokens = counted or pieces
    return {"ttft_s": (first - t0) if first else None, "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall}


async def single(server: Server, model: str, requests: int, max_tokens: int) -> dict:
    async with httpx.AsyncClient(timeout=600) as client:
        for _ in range(3):  # warm
            await stream_once(client, server, model, max_tokens)
        runs = [await stream_once(client, server, model, max_tokens) for _ in range(requests)]
    rates = [r["tokens_per_s"] for r in runs]
    return {
        "ttft": summary_ms([r["ttft_s"] for r in runs if r["ttft_s"] is not None]),
        "tokens_per_s_median": round(statistics.median(rates), 1) if rates else None,
        "wall_ms_median": round(statistics.median(r["wall_s"] for r in runs) * 1000, 2),
        "tokens_median": statistics.median(r["tokens"] for r in runs),
    }


ROUNDS = 3  # each concurrent measure is the median round of this many (the machine is shared and noisy)


async def concurrent(server: Server, models: list[str], n: int, max_tokens: int, rounds: int = ROUNDS) -> dict:
    """`n` streams at once, the i-th asking for models[i % len(models)]: the round with the median total tokens/s of
    `rounds`."""
    runs = [await _concurrent_once(server, models, n, max_tokens) for _ in range(rounds)]
    runs.sort(key=lambda r: r["tokens_per_s_total"])
    return {**runs[len(runs) // 2], "rounds_tokens_per_s": [r["tokens_per_s_total"] for r in runs]}


async def _concurrent_once(server: Server, models: list[str], n: int, max_tokens: int) -> dict:
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=n + 10)) as client:
        t0 = time.perf_counter()
        runs = await asyncio.gather(
            *(stream_once(client, server, models[i % len(models)], max_tokens) for i in range(n))
        )
        wall = time.perf_counter() - t0
    tokens = sum(r["tokens"] for r in runs)
    return {
        "streams": n,
        "models": len(models),
        "wall_s": round(wall, 3),
        "tokens": tokens,
        "tokens_per_s_total": round(tokens / wall, 1),
        "ttft": summary_ms([r["ttft_s"] for r in runs if r["ttft_s"] is not None]),
    }


async def load_adapters(server: Server, folders: list[Path]) -> list[str]:
    names = []
    async with httpx.AsyncClient(timeout=120) as client:
        for i, folder in enumerate(folders):
            name = f"adapter-{i}"
            r = await client.post(
                f"{server.url}/v1/load_lora_adapter",
                json={"lora_name": name, "lora_path": str(folder)},
                headers=server.headers,
            )
            r.raise_for_status()
            names.append(name)
    return names


async def run(args: argparse.Namespace, work: Path) -> dict:
    results: dict = {"machine": machine(), "params": {k: v for k, v in vars(args).items() if k != "func"}}
    model, merged, adapters_dir = work / "tiny", work / "merged", work / "adapters"
    subprocess.run([str(ENGINE_PY), str(REPO_ROOT / "llmct/tiny/make_model.py"), "--out", str(model)], check=True)
    subprocess.run(
        [str(ENGINE_PY), str(REPO_ROOT / "bench/_tiny_adapters.py"), "--model", str(model), "--out", str(adapters_dir)]
        + ["--count", str(args.adapters), "--merged", str(merged)],
        check=True,
        capture_output=True,
    )
    folders = sorted(adapters_dir.iterdir(), key=lambda p: int(p.name.split("-")[1]))
    n, tokens = args.concurrency, args.max_tokens

    async def measure(server: Server, model_name: str = "base") -> dict:
        ready_s = await server.wait_ready(model_name)
        print(f"{server.name}: ready in {ready_s:.0f} s, measuring ...", flush=True)
        out = {"ready_s": round(ready_s, 1), "rss_mb": server.rss_mb()}
        out["single"] = await single(server, model_name, args.requests, tokens)
        await _concurrent_once(server, [model_name], n, tokens)  # warm: the first batch of a size is slow
        out["concurrent"] = await concurrent(server, [model_name], n, tokens)
        return out

    engines: dict = {}
    for name, start in (
        ("llamafactory", lambda: llamafactory(model, work)),
        ("vllm", lambda: vllm(model, work, "vllm")),
        ("vllm_merged", lambda: vllm(merged, work, "vllm_merged")),
    ):
        server = start()
        try:
            engines[name] = await measure(server)
        finally:
            server.stop()
    results["engines"] = engines

    server = vllm(model, work, "vllm_lora", max_loras=args.adapters)
    try:
        lora: dict = {"ready_s": round(await server.wait_ready("base"), 1)}
        await single(server, "base", 2, tokens)  # settle its memory before the first reading
        rss_before = server.rss_mb()
        names = await load_adapters(server, folders)
        await concurrent(server, names, len(names), tokens, rounds=1)  # each adapter used once: in the engine's slots
        rss_after = server.rss_mb()
        lora["rss_mb"] = {"no_adapters": rss_before, f"{len(names)}_adapters": rss_after}
        lora["rss_mb_per_adapter"] = round((rss_after - rss_before) / len(names), 2)
        await _concurrent_once(server, ["base"], n, tokens)  # warm
        lora["base_only"] = await concurrent(server, ["base"], n, tokens)
        for k in args.mix:
            lora[f"{k}_adapters"] = await concurrent(server, names[:k], n, tokens)
        results["multi_lora"] = lora
    finally:
        server.stop()

    vllm_plain = engines["vllm"]["concurrent"]["tokens_per_s_total"]
    merged_total = engines["vllm_merged"]["concurrent"]["tokens_per_s_total"]
    results["summary"] = {
        "vllm_over_llamafactory_single_tokens_per_s": round(
            engines["vllm"]["single"]["tokens_per_s_median"] / engines["llamafactory"]["single"]["tokens_per_s_median"],
            2,
        ),
        "vllm_over_llamafactory_concurrent_tokens_per_s": round(
            vllm_plain / engines["llamafactory"]["concurrent"]["tokens_per_s_total"], 2
        ),
        "ttft_p50_ms_concurrent": {
            name: engines[name]["concurrent"]["ttft"]["p50_ms"] for name in ("llamafactory", "vllm")
        },
        "lora_mix_over_base_plain": {
            f"{k}": round(results["multi_lora"][f"{k}_adapters"]["tokens_per_s_total"] / vllm_plain, 2)
            for k in args.mix
        },
        "lora_mix_over_merged": {
            f"{k}": round(results["multi_lora"][f"{k}_adapters"]["tokens_per_s_total"] / merged_total, 2)
            for k in args.mix
        },
        "base_on_lora_server_over_plain": round(
            results["multi_lora"]["base_only"]["tokens_per_s_total"] / vllm_plain, 2
        ),
        "one_more_adapter_mb": results["multi_lora"]["rss_mb_per_adapter"],
        "one_more_deployment_mb": engines["vllm"]["rss_mb"],
    }
    return results


def report(results: dict) -> None:
    rows = [
        [
            name,
            e["ready_s"],
            e["rss_mb"],
            e["single"]["ttft"]["p50_ms"],
            e["single"]["tokens_per_s_median"],
            e["concurrent"]["tokens_per_s_total"],
            e["concurrent"]["ttft"]["p50_ms"],
        ]
        for name, e in results["engines"].items()
    ]
    print_table(
        "engines on the tiny model (CPU)",
        ["server", "ready s", "RSS MB", "TTFT p50 ms", "tok/s one stream", "tok/s concurrent", "TTFT p50 ms conc."],
        rows,
    )
    lora = results["multi_lora"]
    rows = [["base only (LoRA enabled)", lora["base_only"]["tokens_per_s_total"], lora["base_only"]["ttft"]["p50_ms"]]]
    rows += [
        [key.replace("_", " "), v["tokens_per_s_total"], v["ttft"]["p50_ms"]]
        for key, v in lora.items()
        if key.endswith("_adapters") and isinstance(v, dict) and "tokens_per_s_total" in v
    ]
    print_table("multi-LoRA, concurrent streams", ["requests spread over", "tok/s total", "TTFT p50 ms"], rows)
    print_table("summary", ["measure", "value"], [[k, v] for k, v in results["summary"].items()])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=20, help="single-stream requests per server")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens generated per request (at most)")
    parser.add_argument("--concurrency", type=int, default=50, help="streams at once in the concurrent rounds")
    parser.add_argument("--adapters", type=int, default=16, help="LoRA adapters made and loaded")
    parser.add_argument("--mix", type=int, nargs="+", default=[1, 4, 16], help="adapters per concurrent round")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (servers' logs)")


def main(args: argparse.Namespace) -> dict:
    if not VLLM_PY.exists() or not ENGINE_PY.exists():
        raise SystemExit("needs .venv-vllm and .venv-engine: run `make engine`")
    args.mix = [k for k in args.mix if k <= args.adapters]
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        results = asyncio.run(run(args, work))
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report(results)
    write_results("serving", results)
    return results
