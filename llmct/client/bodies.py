"""Request bodies from a command line: a job from a YAML file and flags, a dataset's name from its file's."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import CliError, Exit

# The flags of `jobs submit`, each the POST /api/jobs field it sets (the rest: --set field=value).
JOB_FLAGS = {
    "kind": "kind",
    "base_model": "base_model",
    "model": "model",
    "stage": "stage",
    "finetuning_type": "finetuning_type",
    "max_steps": "max_steps",
    "epochs": "num_train_epochs",
    "learning_rate": "learning_rate",
    "lora_rank": "lora_rank",
    "batch_size": "per_device_train_batch_size",
    "cutoff_len": "cutoff_len",
    "template": "template",
    "gpus": "gpu_count",
    "priority": "priority",
}


def usage(message: str) -> CliError:
    return CliError(message, Exit.USAGE)


def read_job_file(path: Path) -> dict[str, Any]:
    """A job body from a YAML (or JSON) file: a mapping of POST /api/jobs fields."""
    try:
        body = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise usage(f"{path}: {exc}") from exc
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise usage(
            f"{path}: a job is a mapping of fields (kind, base_model, datasets, ...), not a {type(body).__name__}"
        )
    return body


def parse_setting(text: str) -> tuple[list[str], Any]:
    """`field=value` (`a.b=value` sets a nested field), the value read as YAML: 3, 0.5, true, [a, b], text."""
    name, sep, raw = text.partition("=")
    path = name.strip().split(".")
    if not sep or not all(path):
        raise usage(f"--set takes field=value (e.g. --set warmup_steps=10), not {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def set_path(body: dict[str, Any], path: list[str], value: Any) -> None:
    node = body
    for key in path[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise usage(f"--set {'.'.join(path)}: {key} is not a mapping")
        node = child
    node[path[-1]] = value


def job_body(
    file_body: Mapping[str, Any], flags: Mapping[str, Any], datasets: Iterable[str], settings: Iterable[str]
) -> dict[str, Any]:
    """The POST /api/jobs body: the file's fields, then the flags given, then each --set (later wins); a train job
    when no kind is said."""
    body = dict(file_body)
    for flag, value in flags.items():
        if value is not None:
            body[JOB_FLAGS[flag]] = value
    if datasets := list(datasets):
        body["datasets"] = datasets
    for text in settings:
        set_path(body, *parse_setting(text))
    body.setdefault("kind", "train")
    return body


def dataset_name(path: Path) -> str:
    """A dataset name from a file's (the rules of the datasets API: letters, digits, '.', '-', single '_', starting
    with a letter or digit, at most 64)."""
    stem = path.name
    for suffix in (".gz", ".tar", ".zip", ".jsonl", ".json", ".csv", ".parquet"):
        stem = stem.removesuffix(suffix)
    name = re.sub(r"[^A-Za-z0-9._-]", "-", stem)
    name = re.sub(r"_{2,}", "_", name).lstrip("._-")[:64]
    if not name:
        raise usage(f"cannot make a dataset name of {path.name!r}: give --name")
    return name
