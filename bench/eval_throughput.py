"""eval_throughput: an evaluation job through the whole platform vs the same frozen YAML run directly.

The tiny Llama scores `--samples` examples of tiny_sft, either with generation (`do_predict`, BLEU/ROUGE,
the default) or loss only (`--evaluation loss`, `do_eval`). Platform run: every service as a process,
POST /api/jobs (kind eval) on the gateway, wait for `succeeded` on the job feed (overhead.platform_run).
Direct run: the job's frozen YAML with only output_dir changed, run as `llamafactory-cli train <yaml>` with
the agent's environment for the engine (overhead.direct_run). Same run, alternating order, after one
warm-up platform job that also provides the YAML.

Two throughputs per run, each as platform / direct ratios (aim: the engine's own samples/s within noise of
direct, i.e. ratio ~1.0; end-to-end samples/s = samples / wall including the ~10 s engine start-up):
- the engine's samples/s (predict_samples_per_second or eval_samples_per_second, its own timing), and
- end-to-end samples/s: samples / wall seconds from submit (or spawn) to the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from pathlib import Path

from . import overhead
from ._infra import Infra, machine, print_table, write_results

AGENT_CPU_SLOTS = 1


def eval_request(evaluation: str, samples: int) -> dict:
    return {
        "kind": "eval",
        "model": "tiny-llama",
        "datasets": ["tiny_sft"],
        "evaluation": evaluation,
        "gpu_count": 0,
        "max_samples": samples,
        "per_device_eval_batch_size": 4,
        "cutoff_len": 128,
        "max_new_tokens": 16,
    }


def engine_samples_per_s(output_dir: Path) -> float | None:
    try:
        data = json.loads((Path(output_dir) / "all_results.json").read_text())
    except (OSError, ValueError):
        return None
    return data.get("predict_samples_per_second") or data.get("eval_samples_per_second")


async def run(args: argparse.Namespace, infra: Infra) -> dict:
    results: dict = {"machine": machine(), "params": vars(args).copy()}
    print("building the tiny model ...", flush=True)
    token = await overhead.prepare(infra)
    gw_url = f"http://127.0.0.1:{infra.env['LLMCT_GATEWAY_PORT']}"
    agent_pid = next(s for s in infra.services if s.name == "agent").process.pid
    request = eval_request(args.evaluation, args.samples)
    print("warm-up platform job (also gives the frozen YAML) ...", flush=True)
    warm = await overhead.platform_run(gw_url, token, request, args.timeout, agent_pid)
    config_yaml = warm.pop("config_yaml")
    results["config_yaml"] = config_yaml
    storage = infra.settings.storage
    reps = []
    for rep in range(args.reps):
        order = ("platform", "direct") if rep % 2 == 0 else ("direct", "platform")
        entry: dict = {"rep": rep, "order": list(order)}
        for which in order:
            if which == "platform":
                run_ = await overhead.platform_run(gw_url, token, request, args.timeout, agent_pid)
                run_.pop("config_yaml")
                run_["engine_samples_per_s"] = engine_samples_per_s(storage.output / run_["job_id"])
            else:
                run_ = await overhead.direct_run(infra, config_yaml, f"eval-{rep}", args.timeout)
                run_["engine_samples_per_s"] = engine_samples_per_s(storage.output / f"direct-eval-{rep}")
            run_["e2e_samples_per_s"] = round(args.samples / run_["wall_s"], 4)
            entry[which] = run_
            print(
                f"  rep {rep} {which:8s} wall {run_['wall_s']:.2f} s, engine {run_['engine_samples_per_s']} samples/s",
                flush=True,
            )
        p, d = entry["platform"], entry["direct"]
        entry["engine_ratio"] = round(p["engine_samples_per_s"] / d["engine_samples_per_s"], 4)
        entry["e2e_ratio"] = round(p["e2e_samples_per_s"] / d["e2e_samples_per_s"], 4)
        reps.append(entry)
    results["reps"] = reps
    results["summary"] = {
        "engine_samples_per_s_platform_median": statistics.median(r["platform"]["engine_samples_per_s"] for r in reps),
        "engine_samples_per_s_direct_median": statistics.median(r["direct"]["engine_samples_per_s"] for r in reps),
        "engine_ratio_median": statistics.median(r["engine_ratio"] for r in reps),
        "e2e_samples_per_s_platform_median": statistics.median(r["platform"]["e2e_samples_per_s"] for r in reps),
        "e2e_samples_per_s_direct_median": statistics.median(r["direct"]["e2e_samples_per_s"] for r in reps),
        "e2e_ratio_median": statistics.median(r["e2e_ratio"] for r in reps),
        "platform_added_s_median": statistics.median(
            r["platform"]["platform_added_s"] for r in reps if r["platform"]["platform_added_s"] is not None
        ),
    }
    return results


def report(results: dict) -> None:
    rows = [
        [
            r["rep"],
            " → ".join(r["order"]),
            r["platform"]["wall_s"],
            r["direct"]["wall_s"],
            r["platform"]["engine_samples_per_s"],
            r["direct"]["engine_samples_per_s"],
            r["engine_ratio"],
            r["e2e_ratio"],
        ]
        for r in results["reps"]
    ]
    print_table(
        "eval throughput: platform vs direct llamafactory-cli",
        [
            "rep",
            "order",
            "platform wall s",
            "direct wall s",
            "platform engine samples/s",
            "direct engine samples/s",
            "engine ratio",
            "end-to-end ratio",
        ],
        rows,
    )
    print_table("summary", ["measure", "value"], [[k, v] for k, v in results["summary"].items()])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reps", type=int, default=4, help="repetitions of the platform/direct pair")
    parser.add_argument("--samples", type=int, default=32, help="examples scored per run")
    parser.add_argument("--evaluation", choices=("generation", "loss"), default="generation")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one run may take")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")


def main(args: argparse.Namespace) -> dict:
    with Infra("eval_throughput", keep=args.keep) as infra:
        print("starting every service as a process ...", flush=True)
        infra.start_services(
            ("auth", "scheduler", "datasets", "registry", "agent", "gateway"),
            LLMCT_HEARTBEAT_S="1",
            LLMCT_CPU_SLOTS=str(AGENT_CPU_SLOTS),
            LLMCT_RUNTIME="process",
        )
        results = asyncio.run(run(args, infra))
    report(results)
    write_results("eval_throughput", results)
    return results
