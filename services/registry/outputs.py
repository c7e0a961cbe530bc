"""Names, sizes and parameter counts of what succeeded jobs leave behind (`jobs.output`, rendered by the
scheduler at submit), measured on disk when the registry registers it."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

MAX_NAME = 128


def default_name(parent: str, label: str, job_id: str, long: bool = False) -> str:
    """`<parent>-<label>-<job id suffix>`, cut to fit; `long` uses the whole job id (after a clash)."""
    suffix = job_id.rsplit("_", 1)[-1]
    tail = f"-{label}-{suffix if long else suffix[-8:]}"
    return parent[: MAX_NAME - len(tail)] + tail


def folder_size(path: str) -> int | None:
    """Bytes under `path`, or None when it is not there (blocking: run it in a thread)."""
    root = Path(path)
    if not root.is_dir():
        return None
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += (Path(folder) / name).lstat().st_size
            except OSError:
                continue
    return total


def count_parameters(model_dir: str | Path) -> int | None:
    """Parameters of a safetensors model, read from the file headers only (blocking; no torch needed)."""
    total = 0
    files = sorted(Path(model_dir).glob("*.safetensors"))
    try:
        for path in files:
            with open(path, "rb") as handle:
                (size,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(size))
            for name, tensor in header.items():
                if name != "__metadata__":
                    count = 1
                    for dim in tensor["shape"]:
                        count *= dim
                    total += count
    except (OSError, ValueError, KeyError, struct.error):
        return None
    return total if files else None
