"""Write tiny, deterministic LLaMA-Factory datasets (alpaca SFT and plain-text pretraining).

Standard library only, so both the platform's interpreter and the engine's can run it:

    python -m llmct.tiny.data --out DATA_DIR [--examples 64]
    python llmct/tiny/data.py --out DATA_DIR

It writes ``tiny_sft.json`` (alpaca: instruction/input/output), ``tiny_pt.json`` (``{"text": ...}``)
and merges their entries into ``DATA_DIR/dataset_info.json`` without touching other entries, so a
LLaMA-Factory config can say ``dataset_dir: DATA_DIR`` and ``dataset: tiny_sft`` (or ``tiny_pt``).

``write_tiny_benchmark`` writes ``tinymc``, a multiple-choice task in the layout LLaMA-Factory's
``llamafactory-cli eval`` reads (MMLU / C-Eval / CMMLU): ``mapping.json`` (subject -> name, category),
a ``README.md`` whose YAML front matter declares one config per subject (so the ``datasets`` library
loads it from plain CSV, no loading script), and ``<subject>/{train,validation,test}.csv`` with the
columns question, A, B, C, D, answer.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

SFT_NAME = "tiny_sft"
PT_NAME = "tiny_pt"
DEFAULT_EXAMPLES = 64
DEFAULT_SEED = 0

_WORDS = [
    "cat",
    "river",
    "model",
    "green",
    "train",
    "cloud",
    "apple",
    "stone",
    "light",
    "house",
    "music",
    "paper",
    "sugar",
    "tiger",
    "window",
    "garden",
    "planet",
    "silver",
    "orange",
    "yellow",
]
_CAPITALS = {
    "France": "Paris",
    "Japan": "Tokyo",
    "Italy": "Rome",
    "Egypt": "Cairo",
    "Peru": "Lima",
    "Canada": "Ottawa",
    "Kenya": "Nairobi",
    "Norway": "Oslo",
    "Chile": "Santiago",
    "China": "Beijing",
}
_OPPOSITES = {
    "hot": "cold",
    "up": "down",
    "big": "small",
    "early": "late",
    "light": "dark",
    "fast": "slow",
    "open": "closed",
    "full": "empty",
    "old": "new",
    "wet": "dry",
}

Example = dict[str, str]


def _add(rng: random.Random) -> Example:
    a, b = rng.randint(0, 50), rng.randint(0, 50)
    return {"instruction": "Add the two numbers.", "input": f"{a} and {b}", "output": f"{a} plus {b} is {a + b}."}


def _reverse(rng: random.Random) -> Example:
    word = rng.choice(_WORDS)
    return {"instruction": "Spell the word backwards.", "input": word, "output": word[::-1]}


def _capital(rng: random.Random) -> Example:
    country = rng.choice(sorted(_CAPITALS))
    return {
        "instruction": f"What is the capital of {country}?",
        "input": "",
        "output": f"The capital of {country} is {_CAPITALS[country]}.",
    }


def _opposite(rng: random.Random) -> Example:
    word = rng.choice(sorted(_OPPOSITES))
    return {"instruction": "Give the opposite of the word.", "input": word, "output": _OPPOSITES[word]}


def _count(rng: random.Random) -> Example:
    word = rng.choice(_WORDS)
    return {
        "instruction": "How many letters are in this word?",
        "input": word,
        "output": f"The word {word} has {len(word)} letters.",
    }


_TASKS: tuple[Callable[[random.Random], Example], ...] = (_add, _reverse, _capital, _opposite, _count)


def sft_examples(n: int = DEFAULT_EXAMPLES, seed: int = DEFAULT_SEED) -> list[Example]:
    """`n` alpaca-style examples, the same for the same `n` and `seed`."""
    rng = random.Random(seed)
    return [_TASKS[i % len(_TASKS)](rng) for i in range(n)]


def pretrain_texts(n: int = DEFAULT_EXAMPLES, seed: int = DEFAULT_SEED) -> list[str]:
    """`n` short plain-text documents made from the SFT examples (for `stage: pt`)."""
    return [f"{ex['instruction']} {ex['input']} {ex['output']}".replace("  ", " ") for ex in sft_examples(n, seed)]


def corpus_lines(seed: int = DEFAULT_SEED) -> Iterator[str]:
    """Text that covers the datasets' vocabulary, for training a tokenizer on."""
    for ex in sft_examples(2000, seed):
        yield " ".join(v for v in ex.values() if v)


def _write_json(path: Path, payload: object) -> None:
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _merge_dataset_info(data_dir: Path, entries: dict[str, dict]) -> Path:
    info_path = data_dir / "dataset_info.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    info.update(entries)
    _write_json(info_path, info)
    return info_path


def write_tiny_datasets(data_dir: str | Path, n: int = DEFAULT_EXAMPLES, seed: int = DEFAULT_SEED) -> Path:
    """Write tiny_sft.json, tiny_pt.json and their dataset_info.json entries; return the info file."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    _write_json(data_dir / f"{SFT_NAME}.json", sft_examples(n, seed))
    _write_json(data_dir / f"{PT_NAME}.json", [{"text": t} for t in pretrain_texts(n, seed)])
    return _merge_dataset_info(
        data_dir,
        {
            SFT_NAME: {"file_name": f"{SFT_NAME}.json"},
            PT_NAME: {"file_name": f"{PT_NAME}.json", "columns": {"prompt": "text"}},
        },
    )


BENCHMARK_NAME = "tinymc"
_BENCH_SUBJECTS = {
    "arithmetic": ("arithmetic", "STEM"),
    "geography": ("geography", "Social Sciences"),
    "words": ("words", "Humanities"),
}


def _choice_row(rng: random.Random, subject: str) -> list[str]:
    if subject == "arithmetic":
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        question, right, wrong = f"What is {a} plus {b}?", str(a + b), [str(a + b + d) for d in (1, 2, -1)]
    elif subject == "geography":
        country = rng.choice(sorted(_CAPITALS))
        others = [c for k, c in sorted(_CAPITALS.items()) if k != country]
        question, right, wrong = f"What is the capital of {country}?", _CAPITALS[country], rng.sample(others, 3)
    else:
        word = rng.choice(sorted(_OPPOSITES))
        others = [o for k, o in sorted(_OPPOSITES.items()) if k != word]
        question, right, wrong = f"What is the opposite of {word}?", _OPPOSITES[word], rng.sample(others, 3)
    answer = rng.randrange(4)
    options = wrong[:answer] + [right] + wrong[answer:]
    return [question, *options, "ABCD"[answer]]


def write_tiny_benchmark(task_dir: str | Path, per_split: int = 4, seed: int = DEFAULT_SEED) -> Path:
    """Write the ``tinymc`` task under ``task_dir`` (LLaMA-Factory's ``task_dir``); return its folder."""
    import csv

    root = Path(task_dir) / BENCHMARK_NAME
    rng = random.Random(seed)
    front = ["---", "configs:"]
    for subject in _BENCH_SUBJECTS:
        (root / subject).mkdir(parents=True, exist_ok=True)
        front += [f"- config_name: {subject}", "  data_files:"]
        for split in ("train", "validation", "test"):
            with open(root / subject / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["question", "A", "B", "C", "D", "answer"])
                writer.writerows(_choice_row(rng, subject) for _ in range(per_split))
            front += [f"  - split: {split}", f"    path: {subject}/{split}.csv"]
    (root / "README.md").write_text(
        "\n".join([*front, "---", "", "A tiny multiple-choice benchmark for tests."]) + "\n"
    )
    _write_json(root / "mapping.json", {s: {"name": n, "category": c} for s, (n, c) in _BENCH_SUBJECTS.items()})
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])  # no docstring under python -OO
    parser.add_argument("--out", required=True, type=Path, help="dataset dir (LLaMA-Factory's dataset_dir)")
    parser.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--benchmark-dir", type=Path, help="also write the tinymc benchmark task here")
    args = parser.parse_args(argv)
    info = write_tiny_datasets(args.out, args.examples, args.seed)
    print(f"wrote {SFT_NAME} and {PT_NAME} ({args.examples} examples each) and {info}")
    if args.benchmark_dir:
        print(f"wrote the {BENCHMARK_NAME} benchmark in {write_tiny_benchmark(args.benchmark_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
