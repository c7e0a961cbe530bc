"""What a finished job measured, read from the files LLaMA-Factory writes into its output folder.

One metrics record per job, with agreed names whatever the kind (clients chart and compare these):
training keeps the engine's own numbers (`train_loss`, `train_runtime`, ...); evaluations report
`eval_loss` and `perplexity` (do_eval), `bleu_4`, `rouge_1`, `rouge_2`, `rouge_l` (do_predict with
generation; percentages, as the engine reports them), `accuracy` and `accuracy_<category>` (the
multiple-choice benchmark; percentages), and `samples`, `samples_per_second`, `latency_ms` (per sample).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

PREDICTIONS_FILE = "generated_predictions.jsonl"
BENCHMARK_LOG = Path("results") / "results.log"
_GENERATION_NAMES = {
    "predict_bleu-4": "bleu_4",
    "predict_rouge-1": "rouge_1",
    "predict_rouge-2": "rouge_2",
    "predict_rouge-l": "rouge_l",
}
_SCORE_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z ]*?):\s*([0-9.]+)\s*$")


def _numbers(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    # Finite numbers only: a diverged run writes NaN, which JSON carries as null and no metric can be.
    return {
        k: float(v)
        for k, v in data.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return 0


def _throughput(metrics: dict[str, float], samples: int, runtime: float | None) -> None:
    if samples:
        metrics["samples"] = float(samples)
    if runtime and samples:
        metrics["samples_per_second"] = round(samples / runtime, 4)
        metrics["latency_ms"] = round(1000 * runtime / samples, 3)


def eval_metrics(output_dir: Path) -> dict[str, float]:
    """The agreed metrics of an evaluation job (any of its three kinds)."""
    metrics: dict[str, float] = {}
    loss = _numbers(output_dir / "eval_results.json")
    if "eval_loss" in loss:
        metrics["eval_loss"] = loss["eval_loss"]
        metrics["perplexity"] = math.exp(min(loss["eval_loss"], 700.0))
        runtime = loss.get("eval_runtime")
        per_s = loss.get("eval_samples_per_second")
        _throughput(metrics, round(per_s * runtime) if per_s and runtime else 0, runtime)
    generation = _numbers(output_dir / "predict_results.json")
    if generation:
        metrics.update({ours: generation[theirs] for theirs, ours in _GENERATION_NAMES.items() if theirs in generation})
        _throughput(metrics, _count_lines(output_dir / PREDICTIONS_FILE), generation.get("predict_runtime"))
    scores = benchmark_scores(output_dir / BENCHMARK_LOG)
    if scores:
        metrics.update(scores)
        try:
            answers = json.loads((output_dir / "results" / "results.json").read_text())
            metrics["samples"] = float(sum(len(per_subject) for per_subject in answers.values()))
        except (OSError, ValueError, AttributeError, TypeError):
            pass
    return metrics


def benchmark_scores(path: Path) -> dict[str, float]:
    """`accuracy` (the engine's "Average") and `accuracy_<category>` from the evaluator's results.log."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    scores = {}
    for line in lines:
        found = _SCORE_LINE.match(line)
        if found:
            name = found.group(1).strip().lower().replace(" ", "_")
            scores["accuracy" if name == "average" else f"accuracy_{name}"] = float(found.group(2))
    return scores


def read(kind: str, output_dir: Path) -> dict[str, float]:
    """The metrics record of a finished job of `kind`."""
    if kind == "eval":
        return eval_metrics(output_dir)
    return _numbers(output_dir / "all_results.json")
