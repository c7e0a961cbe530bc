"""Which datasets a job's YAML reads, and which of their files: what a job's container is given of the data folder.

The data folder holds every user's datasets and one dataset_info.json naming them all. A job gets a dataset_info.json
of its own (only the entries its `dataset` and `eval_dataset` name) and the files those entries point to, never
the folder itself. An entry on a hub (`hf_hub_url`, `ms_hub_url`, `om_hub_url`) makes the job one that downloads.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

INFO_FILE = "dataset_info.json"
DATASET_KEYS = ("dataset", "eval_dataset")
HUB_URL_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url")
LOCAL_KEYS = ("file_name", "script_url")  # paths relative to dataset_dir (script_url may also be a hub id)


@dataclass(frozen=True, kw_only=True)
class JobDatasets:
    """The job's own part of the data folder."""

    dataset_dir: Path
    entries: dict[str, Any] = field(default_factory=dict)  # its dataset_info.json
    files: tuple[Path, ...] = ()  # existing files and folders those entries read, inside dataset_dir
    from_hub: bool = False

    @property
    def info_path(self) -> Path:
        return self.dataset_dir / INFO_FILE


def dataset_names(config: Mapping[str, Any]) -> list[str]:
    """The dataset_info keys of `dataset` and `eval_dataset` (comma-separated strings or lists)."""
    names: list[str] = []
    for key in DATASET_KEYS:
        value = config.get(key)
        items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else []
        names += [item.strip() for item in items if isinstance(item, str) and item.strip()]
    return list(dict.fromkeys(names))


def job_datasets(config: Mapping[str, Any]) -> JobDatasets | None:
    """The job's datasets as its YAML names them; None when it names no dataset folder (or an unreadable one)."""
    where = config.get("dataset_dir")
    if not isinstance(where, str) or not os.path.isabs(where):
        return None
    dataset_dir = Path(os.path.normpath(where))
    try:
        info = json.loads((dataset_dir / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("%s cannot be read (%s): the job gets no dataset files", dataset_dir / INFO_FILE, exc)
        return JobDatasets(dataset_dir=dataset_dir)
    if not isinstance(info, dict):
        return JobDatasets(dataset_dir=dataset_dir)
    entries = {name: info[name] for name in dataset_names(config) if isinstance(info.get(name), dict)}
    files = [path for entry in entries.values() for path in _local_paths(dataset_dir, entry)]
    return JobDatasets(
        dataset_dir=dataset_dir,
        entries=entries,
        files=tuple(dict.fromkeys(files)),
        from_hub=any(entry.get(key) for entry in entries.values() for key in HUB_URL_KEYS),
    )


def _local_paths(dataset_dir: Path, entry: Mapping[str, Any]) -> list[Path]:
    """The existing paths inside `dataset_dir` an entry names (a name that leaves it is never given)."""
    found = []
    for key in LOCAL_KEYS:
        value = entry.get(key)
        if not isinstance(value, str) or not value:
            continue
        path = Path(os.path.normpath(dataset_dir / value))
        real, root = os.path.realpath(path), os.path.realpath(dataset_dir)
        if path.is_relative_to(dataset_dir) and real != root and real.startswith(root + os.sep) and path.exists():
            found.append(path)
    return found


def write_info(datasets: JobDatasets, target: Path) -> None:
    """The job's own dataset_info.json at `target` (readable by the job's user)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(datasets.entries, indent=2, ensure_ascii=False), encoding="utf-8")
    target.chmod(0o644)
